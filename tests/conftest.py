"""Shared test setup. Real parts (dockerd, vLLM CPU, the NVML stand-in) come from tests/fixtures/.

A test that needs a real part calls `require(ok, why)`: outside CI it skips saying why; in CI
(CI=true) a missing part is a failure, because .ci/run installs every part.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO_ROOT

pytest_plugins = [
    "fixtures.nvml",
    "fixtures.vllm_server",
    "fixtures.docker_engine",
    "fixtures.servers",
    "fixtures.stand_in",
]


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locks and the process runtime's registry (r4b_deploy.paths.state_dir) go to the test run's
    temporary folder, never the user's ~/.local/state; commands the tests run inherit it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-state"))


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
