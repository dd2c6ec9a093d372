"""Shared test setup. Real parts (dockerd, vLLM CPU, the NVML stand-in) come from tests/fixtures/.

A test that needs a real part calls `require(ok, why)`: outside CI it skips saying why; in CI
(CI=true) a missing part is a failure, because .ci/run installs every part.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytest_plugins = [
    "fixtures.nvml",
    "fixtures.vllm_server",
    "fixtures.docker_engine",
    "fixtures.servers",
]


def require(ok: bool, why: str) -> None:
    """Skip outside CI, fail inside it: no test is skipped silently in CI."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"required part missing in CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
