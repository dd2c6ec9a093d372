"""A server's log file: its last lines, read from the end (logs grow), and the lines appended
to it while the server runs (`logs -f`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

FOLLOW_POLL_S = 0.5
LOG_READ_BLOCK_BYTES = 64 * 1024  # logs are read from the end in blocks this size


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
