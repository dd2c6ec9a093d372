"""The one atomic writer: whole files, an exact mode whatever the umask, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import file_mode, umask

from r4b_deploy import atomic
from r4b_deploy.atomic import REPORT_FILE_MODE, write_bytes_atomic, write_text_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o000])
@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_the_mode_is_exactly_the_one_asked_for(tmp_path: Path, mask: int, mode: int) -> None:
    path = tmp_path / "sub" / "f.txt"
    with umask(mask):
        write_text_atomic(path, "hello\n", mode=mode)
    assert path.read_text() == "hello\n" and file_mode(path) == mode


def test_a_replaced_file_takes_the_new_mode(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    path.chmod(0o600)
    write_bytes_atomic(path, b"new", mode=REPORT_FILE_MODE)
    assert path.read_bytes() == b"new" and file_mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(path, "new", mode=REPORT_FILE_MODE)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_temporary_is_private_until_its_mode_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_fchmod = atomic.os.fchmod

    def spy(fd: int, mode: int) -> None:
        seen.append(atomic.os.fstat(fd).st_mode & 0o777)  # the mode while the content was written
        real_fchmod(fd, mode)

    monkeypatch.setattr(atomic.os, "fchmod", spy)
    with umask(0):
        write_text_atomic(tmp_path / "r4b.env", "VLLM_API_KEY=secret\n", mode=0o600)
    assert seen == [0o600]
