"""What tests import by name (tests/ is on pythonpath): the repo root and `require`.

Kept out of conftest.py because a conftest.py in a subfolder would shadow the module name
`conftest` depending on collection order.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def file_mode(path: Path) -> int:
    """The permission bits of `path` (0o644, 0o600)."""
    return path.stat().st_mode & 0o777


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run a block under another umask: a written file's mode must not depend on the caller's."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def bench_report(levels: Any, **fields: Any) -> Any:
    """A BenchReport around `levels` with one fixed header (date, URL, model, workload); the tests
    that need another mode, token limit or warm-up say so in `fields`."""
    from r4b_deploy.bench.report import BenchReport

    header: dict[str, Any] = {
        "date": "20250101-120000",
        "base_url": "http://127.0.0.1:8000",
        "model_id": "r4b",
        "workload": "text",
        "mode": "mix",
        "max_tokens": 10,
        "ignore_eos": False,
        "seed": 0,
        "timeout_s": 60.0,
        "warmup_requests": 0,
        "warmup_failed": 0,
    }
    return BenchReport(**{**header, **fields, "levels": list(levels)})
