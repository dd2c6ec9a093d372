"""Output paths are checked before long work (atomic.unwritable_reason / require_writable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from r4b_deploy.atomic import require_writable, unwritable_reason, write_text_atomic
from r4b_deploy.errors import UsageError


def test_a_writable_path_passes_and_missing_folders_are_fine(tmp_path: Path) -> None:
    for path in (tmp_path / "r.json", tmp_path / "new" / "deeper" / "r.json"):
        assert unwritable_reason(path) is None
        write_text_atomic(path, "{}", mode=0o644)  # what the check promised


def test_a_folder_a_file_as_folder_and_a_long_name_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert unwritable_reason(tmp_path) == "it is a folder"
    assert "is not a folder" in (unwritable_reason(a_file / "r.json") or "")
    assert "too long" in (unwritable_reason(tmp_path / ("x" * 300)) or "")
    with pytest.raises(UsageError, match=r"--json .*cannot write there: it is a folder"):
        require_writable(tmp_path, "--json")
