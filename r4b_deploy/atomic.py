"""The one way r4b-deploy writes a file: a temporary file beside it, then a rename.

A reader (a CI job picking up `bench.json`, `down` reading the state file) never sees half a
file, and a crash leaves at most a temporary behind (named `.r4b-tmp-*`; the rendered
`.dockerignore` admits only what the Dockerfile copies). Every file gets an explicit mode, set on the open file
before the rename: the umask does not decide it, and a file meant to be private is private from
its first byte (the temporary is created 0600 and only then widened to `mode`).

Modes, decided here so every writer agrees:
- REPORT_FILE_MODE 0644 for reports (smoke.json, junit.xml, bench.json/.md/.png, plan.json,
  up.json): they hold figures, check names and the endpoint URL with its credentials removed,
  never a secret, and a CI runner or a colleague on the host must be able to read them.
- the env file, the only place a secret lives, stays 0600 (`render/env.py` ENV_FILE_MODE);
  the state file 0644 (`launch/state.py`: it names a runtime and a URL, nothing secret).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".r4b-tmp-"
REPORT_FILE_MODE = 0o644
_CREATE_MODE = 0o600  # the temporary's mode until its content and final mode are in place


def temp_path(dest: Path) -> Path:
    """A fresh temporary name in `dest`'s folder (a rename across file systems is not atomic)."""
    return dest.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{dest.name}")


def write_temp(dest: Path, data: bytes, *, mode: int) -> Path:
    """Write `data` to a new temporary beside `dest`, with `mode`, flushed to disk; return its path.

    The caller renames it into place (`os.replace`) or removes it: `render/staging.py` stages
    several files this way and renames them together.
    """
    tmp = temp_path(dest)
    # O_EXCL | O_NOFOLLOW: never write through a link or into a file someone else created.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _CREATE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_bytes_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` with `data` in one step, creating missing parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp(path, data, mode=mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, mode: int) -> None:
    """`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def unwritable_reason(path: Path) -> str | None:
    """Why `write_*_atomic(path, ...)` would fail, or None. Commands check their output paths
    with it before long work (a benchmark), so a typo costs nothing; it creates nothing."""
    try:
        if path.is_dir():
            return "it is a folder"
        folder = path.parent
        while not folder.exists() and folder != folder.parent:  # missing folders are created on write
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a folder"
    except OSError as exc:  # a name over the file system's limit, a loop of links
        return exc.strerror or type(exc).__name__
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return None
    if len(os.fsencode(temp_path(path).name)) > name_max:
        return f"the file name is too long (the file system takes {name_max} bytes, with the temporary's prefix)"
    return None


def require_writable(path: Path, what: str) -> None:
    """UsageError (`what` names the option, e.g. "--json") when `path` cannot be written."""
    reason = unwritable_reason(path)
    if reason is not None:
        from r4b_deploy.errors import UsageError

        raise UsageError(f"{what} {path}: cannot write there: {reason}", fix="name a file in a writable folder")
