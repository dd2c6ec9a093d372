"""A server process detached from its caller and recorded in a pidfile: start it, tell whether it
is still the process we started, stop its whole process group, read and follow its log.

The pidfile holds the pid plus the kernel's start time of that pid, so a recycled pid is never
mistaken for the server. The server runs in a session of its own, so stopping it stops its
children (vLLM's engine processes) too. No secret is ever in the pidfile: argv never carries one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from r4b_deploy.atomic import write_text_atomic
from r4b_deploy.errors import LaunchError
from r4b_deploy.launch.base import StopResult

PREVIOUS_LOG_SUFFIX = ".1"
LOCK_SUFFIX = ".lock"
RECORD_FILE_MODE = 0o644  # pid, start time and URL: `status` run by another user reads it too
STOP_TIMEOUT_S = 30.0  # SIGTERM grace before SIGKILL; vLLM on CPU stops in ~2 s
KILL_WAIT_S = 5.0
POLL_S = 0.2
FOLLOW_POLL_S = 0.5
LOG_READ_BLOCK_BYTES = 64 * 1024  # logs are read from the end in blocks this size
_PROC = Path("/proc")


class ServerRecord(BaseModel):
    """What `server.pid` holds. No secrets: the command is argv, and argv never carries the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int
    start_ticks: int | None  # /proc/<pid>/stat field 22; None where /proc is missing
    started_at: datetime
    url: str
    served_model_name: str
    command: list[str]


# ---------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) from /proc, or None if no such process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def process_start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Is `pid` still the process we started? A recycled pid is not; a zombie is gone (and reaped)."""
    if _PROC.is_dir():
        stat = _proc_stat(pid)
        if stat is None or (start_ticks is not None and stat[1] != start_ticks):
            return False
        if stat[0] in ("Z", "X"):
            _reap(pid)  # only ever our own server: the start time matched
            return False
        return True
    try:  # no /proc (macOS): existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(pid_path: Path) -> Iterator[None]:
    import fcntl

    with open(pid_path.with_name(pid_path.name + LOCK_SUFFIX), "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def read_record(pid_path: Path) -> ServerRecord | None:
    try:
        return ServerRecord.model_validate_json(pid_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, ValueError):
        return None  # a torn or foreign file: treat as no server, start() rewrites it


def record_alive(record: ServerRecord) -> bool:
    return pid_alive(record.pid, record.start_ticks)


def _write_record(pid_path: Path, record: ServerRecord) -> None:
    write_text_atomic(pid_path, record.model_dump_json(indent=2) + "\n", mode=RECORD_FILE_MODE)


def start_vllm_process(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    pid_path: Path,
    url: str,
    served_model_name: str,
) -> ServerRecord:
    """Start `command` detached (own session), output to `log_path`, and record it in `pid_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists():
        log_path.replace(log_path.with_name(log_path.name + PREVIOUS_LOG_SUFFIX))
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=pid_path.parent,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchError(
                f"cannot run {command[0]}: {exc.strerror}", fix="check that vLLM is installed and executable"
            ) from exc
    record = ServerRecord(
        pid=proc.pid,
        start_ticks=process_start_ticks(proc.pid),
        started_at=datetime.now(timezone.utc),
        url=url,
        served_model_name=served_model_name,
        command=command,
    )
    _write_record(pid_path, record)
    return record


def stop_recorded(pid_path: Path, timeout_s: float = STOP_TIMEOUT_S) -> StopResult:
    """SIGTERM the recorded server's process group, SIGKILL after `timeout_s`, drop the pidfile.

    Idempotent: no pidfile, or a server already gone, is `stopped=False`.
    """
    record = read_record(pid_path)
    if record is None:
        pid_path.unlink(missing_ok=True)
        return StopResult(runtime="process", stopped=False)
    removed: list[str] = []
    leader_alive = record_alive(record)
    # The group id is the leader's pid (own session). Linux does not recycle a pid still used as a
    # group id, so if the leader is gone, any process in that group is one of the server's own.
    group_ours = leader_alive or record.start_ticks is None or process_start_ticks(record.pid) is None
    stopped = False
    if group_ours and _group_alive(record.pid):
        stopped = True  # the server, or engine processes it left behind
        _signal_group(record.pid, signal.SIGTERM)
        if not _wait_group_gone(record, timeout_s):
            _signal_group(record.pid, signal.SIGKILL)
            _wait_group_gone(record, KILL_WAIT_S)
            removed.append(f"pid {record.pid} (killed after {timeout_s:.0f} s)")
        else:
            removed.append(f"pid {record.pid}")
    pid_path.unlink(missing_ok=True)
    return StopResult(runtime="process", stopped=stopped, removed=removed)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(record: ServerRecord, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record_alive(record)  # reaps the leader if it is our zombie: a zombie keeps the group alive
        if not _group_alive(record.pid):
            return True
        time.sleep(POLL_S)
    record_alive(record)
    return not _group_alive(record.pid)


# ---------------------------------------------------------------- logs


def tail_and_offset(path: Path, lines: int) -> tuple[list[str], int]:
    """The last `lines` lines of a text file and the offset they end at (reads from the end: logs grow)."""
    block = LOG_READ_BLOCK_BYTES
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = end = f.tell()
        data = b""
        while lines > 0 and end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    if lines <= 0:
        return [], size
    return data.decode(errors="replace").splitlines()[-lines:], size


def tail_lines(path: Path, lines: int) -> list[str]:
    if not path.is_file():
        return []
    return tail_and_offset(path, lines)[0]


def follow_lines(
    path: Path, keep_going: Callable[[], bool], offset: int | None = None, poll_s: float = FOLLOW_POLL_S
) -> Iterator[str]:
    """Yield lines appended to `path` from `offset` (default: its end) until `keep_going()` turns False."""
    with open(path, "rb") as f:
        if offset is None:
            f.seek(0, os.SEEK_END)
        else:
            f.seek(offset)
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode(errors="replace")
                continue
            if not keep_going():
                if pending:
                    yield pending.decode(errors="replace")
                return
            time.sleep(poll_s)
