"""The state file `up` leaves in the folder: which runtime `down`, `status` and `logs` use."""

from __future__ import annotations

from pathlib import Path

import pytest

from r4b_deploy.errors import ConfigError, UsageError
from r4b_deploy.launch import state


def test_write_then_read(tmp_path: Path) -> None:
    written = state.write_state(tmp_path, "docker", url="http://127.0.0.1:8000", container_name="r4b-1")
    read = state.read_state(tmp_path)
    assert read == written
    assert read is not None and read.runtime == "docker" and read.launched_at.tzinfo is not None


def test_no_state_means_docker_by_default(tmp_path: Path) -> None:
    assert state.read_state(tmp_path) is None
    assert state.resolve_runtime_name(tmp_path) == "docker"


def test_recorded_runtime_wins_and_an_override_wins_over_it(tmp_path: Path) -> None:
    state.write_state(tmp_path, "process")
    assert state.resolve_runtime_name(tmp_path) == "process"
    assert state.resolve_runtime_name(tmp_path, "docker") == "docker"


def test_bad_override_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="kubernetes"):
        state.resolve_runtime_name(tmp_path, "kubernetes")


def test_a_damaged_state_file_says_how_to_recover(tmp_path: Path) -> None:
    state.state_path(tmp_path).write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        state.read_state(tmp_path)
    assert "--runtime" in caught.value.fix


def test_the_write_is_atomic(tmp_path: Path) -> None:
    state.write_state(tmp_path, "docker")
    state.write_state(tmp_path, "process")
    assert sorted(p.name for p in tmp_path.iterdir()) == [state.STATE_FILE_NAME]


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no deployment folder"):
        state.require_deployment_dir(tmp_path / "nope")
