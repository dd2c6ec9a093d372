"""pytest imports test files by bare name (the test folders are not packages): two files of one
name in different folders stop the whole run at collection ("import file mismatch")."""

from __future__ import annotations

from collections import Counter

from support import REPO_ROOT


def test_no_two_test_files_share_a_name() -> None:
    names = Counter(p.name for p in (REPO_ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
