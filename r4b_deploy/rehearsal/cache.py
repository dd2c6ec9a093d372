"""The rehearsal cache's entries: one builder at a time, all or nothing, marked complete last.

Several processes (pytest sessions, CI steps) may ask for the same entry at once: each entry is
built under a file lock beside it, and a stamp (what was built) is written last, so a crash
leaves no stamp and the next caller builds again. Nothing here knows what an entry holds:
`vllm_cpu.py` builds the venv, the wheelhouse and the tiny model with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from r4b_deploy.atomic import write_text_atomic
from r4b_deploy.errors import EnvironmentProblem

STAMP_NAME = ".r4b-complete.json"
CACHE_FILE_MODE = 0o644  # a stamp says what was built: nothing secret
LOCK_SUFFIX = ".lock"
LOG_TAIL_LINES = 40


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<target>.lock` (a sibling, so the target can be replaced)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + LOCK_SUFFIX)
    with open(lock_path, "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _fresh_staging(target: Path) -> Path:
    """An empty `<target>.tmp-<pid>`; leftovers of crashed builders are removed (we hold the lock)."""
    for leftover in target.parent.glob(f"{target.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    staging.mkdir(parents=True)
    return staging


def build_once(
    target: Path,
    is_complete: Callable[[Path], bool],
    build: Callable[[Path, Path], dict[str, object]],
) -> Path:
    """Unless `target` is complete: under its lock, `build(staging, log_path)` into a fresh staging
    folder, stamp it with what build returns, and rename it into place (all or nothing)."""
    if is_complete(target):
        return target
    with locked(target):
        if is_complete(target):
            return target
        staging = _fresh_staging(target)
        log_path = target.with_name(target.name + ".log")
        log_path.write_text("")
        try:
            stamp = build(staging, log_path)
            write_stamp(staging / STAMP_NAME, stamp)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def read_stamp(stamp: Path) -> dict[str, object] | None:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def write_stamp(stamp: Path, data: dict[str, object]) -> None:
    write_text_atomic(stamp, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=CACHE_FILE_MODE)


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_logged(
    cmd: list[str], log_path: Path, timeout_s: float, what: str, fix: str, env: dict[str, str] | None = None
) -> None:
    """Run one build step, appending its output to `log_path`; EnvironmentProblem with the log's tail on failure."""
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        try:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s, env=env
            )
        except subprocess.TimeoutExpired as exc:
            raise EnvironmentProblem(
                f"{what} took more than {timeout_s:.0f} s",
                fix=f"{fix} (full log: {log_path})",
                details=_tail(log_path.read_text(errors="replace")),
            ) from exc
    if proc.returncode != 0:
        raise EnvironmentProblem(
            f"{what} failed (exit {proc.returncode})",
            fix=f"{fix} (full log: {log_path})",
            details=_tail(log_path.read_text(errors="replace")),
        )
