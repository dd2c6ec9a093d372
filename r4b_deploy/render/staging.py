"""Writing a folder all or nothing: temp files beside their destination, then renames.

Rendering happens in memory first; this module only writes. Temp names start with `.r4b-tmp-`
(the .dockerignore keeps them out of a build if a crash leaves one behind).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from r4b_deploy.atomic import temp_path, write_temp

FILE_MODE = 0o644


class Staging:
    """Files written beside their destination under temporary names, then renamed into place.

    Everything that can fail (disk full, a vanished wheel) fails while staging; `abort` then
    removes the temporaries and the folder is as it was. `commit` only renames.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.renames: list[tuple[Path, Path]] = []
        self.created_dirs: list[Path] = []
        self.old_dirs: list[Path] = []

    def ensure_dir(self, path: Path) -> None:
        """Create `path` and missing parents, remembering them so `abort` can remove them."""
        missing = []
        for parent in [path, *path.parents]:
            if parent.exists():
                break
            missing.append(parent)
        for parent in reversed(missing):
            parent.mkdir()
            self.created_dirs.append(parent)

    def _temp(self, dest: Path) -> Path:
        return temp_path(dest)

    def add_file(self, name: str, text: str, mode: int = FILE_MODE) -> None:
        dest = self.out / name
        self.ensure_dir(dest.parent)
        # The one atomic writer: a secret is never readable by others, not even briefly.
        self.renames.append((write_temp(dest, text.encode("utf-8"), mode=mode), dest))

    def add_linked_dir(self, name: str, source: Path, files: Iterable[str]) -> None:
        """Folder `name` holding links to (or copies of) `files` from `source`; replaces the old one on commit."""
        dest = self.out / name
        self.ensure_dir(self.out)
        tmp = self._temp(dest)
        tmp.mkdir()
        self.renames.append((tmp, dest))
        for file_name in files:
            link_or_copy(source / file_name, tmp / file_name)

    def commit(self) -> None:
        for tmp, dest in self.renames:
            if tmp.is_dir() and dest.exists():
                old = self._temp(dest)
                os.replace(dest, old)
                self.old_dirs.append(old)
            os.replace(tmp, dest)
        self.renames = []
        for old in self.old_dirs:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        for tmp, _ in self.renames:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        for path in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                path.rmdir()


def link_or_copy(source: Path, dest: Path) -> None:
    """A hard link (no copy of 876 MB) where the file system allows, else a streamed copy."""
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copyfile(source, dest)


def wheel_sizes(folder: Path) -> dict[str, int]:
    """name -> size of the wheels in `folder` ({} when there is no such folder)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in folder.glob("*.whl") if p.is_file()}


def unchanged(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def file_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None
