"""What tests import by name (tests/ is on pythonpath): the repo root and `require`.

Kept out of conftest.py because a conftest.py in a subfolder would shadow the module name
`conftest` depending on collection order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, why: str) -> None:
    """Skip outside CI, fail inside it: no test is skipped silently in CI."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"required part missing in CI: {why}", pytrace=False)
    pytest.skip(why)
