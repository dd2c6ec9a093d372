"""Per-user state kept outside the deployment folder, keyed by the folder's identity: the lock that
serializes `up`/`down` of one folder, and the registry of running process-runtime servers
(`launch/server_registry.py`).

Outside the folder because both must work before the folder exists (`up` renders it) and after
it is gone (`down --dir GONE`). The folder is named by `r4b_deploy.paths.state_dir`
($XDG_STATE_HOME/r4b-deploy, else ~/.local/state/r4b-deploy) and is private to the user.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from r4b_deploy.deployment import folder_identity, sha256_hex
from r4b_deploy.errors import EnvironmentProblem

STATE_DIR_MODE = 0o700  # other users need not know which folders this user deploys
LOCK_FILE_MODE = 0o600
LOCKS_DIR_NAME = "locks"
FOLDER_KEY_HEX = 32  # 128 bits of the identity's hash: no two folders share a lock or a registry entry
# How long an `up`/`down` waits for another one working on the same folder: long enough to ride
# out a `down` (a 30 s SIGTERM grace, then SIGKILL), short enough that a second `up` racing a
# long first one (build, health wait, bench) fails soon with a message instead of hanging.
LOCK_WAIT_S = 60.0
LOCK_POLL_S = 0.2
HOLDER_READ_BYTES = 256


def folder_key(folder: Path | str) -> str:
    """A file name for the folder: the hash of its identity (a path may be long, or contain '/')."""
    return sha256_hex(str(folder_identity(folder)))[:FOLDER_KEY_HEX]


def state_subdir(name: str) -> Path:
    """`state_dir()/name`, created private; EnvironmentProblem when it cannot be."""
    from r4b_deploy.paths import state_dir

    path = state_dir() / name
    try:
        path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot create r4b-deploy's state folder {path}: {exc.strerror}",
            fix="set XDG_STATE_HOME to a writable folder",
        ) from exc
    return path


def lock_path(folder: Path | str) -> Path:
    return state_subdir(LOCKS_DIR_NAME) / f"{folder_key(folder)}.lock"


@contextlib.contextmanager
def deployment_lock(
    folder: Path | str,
    *,
    doing: str,
    wait_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the folder's lock: one `up`/`down` per folder at a time (two `up`s racing otherwise
    start two servers, or one's clean-up removes the other's container).

    Waits up to `wait_s` (default LOCK_WAIT_S) for another holder (`on_wait` is told once, with who holds it), then
    raises EnvironmentProblem naming the holder. `doing` ("up", "down") is what the holder records.
    The lock is an flock: the kernel drops it when the holder exits, however it exits, and the
    server `up` starts does not inherit it (the descriptor is close-on-exec).
    """
    import fcntl

    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    identity = folder_identity(folder)
    path = lock_path(identity)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), LOCK_FILE_MODE)
    try:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    raise EnvironmentProblem(
                        f"another r4b-deploy ({holder}) is working on {identity}; gave up waiting after {wait_s:g} s",
                        fix="let it finish (or stop it with Ctrl-C), then run this again",
                    ) from None
                if not told and on_wait is not None:
                    on_wait(f"waiting up to {wait_s:g} s for another r4b-deploy ({holder}) working on {identity}")
                    told = True
                time.sleep(LOCK_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, r4b-deploy {doing}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it (it may not have written yet)."""
    text = os.pread(fd, HOLDER_READ_BYTES, 0).decode(errors="replace").strip()
    return text or "pid unknown"
