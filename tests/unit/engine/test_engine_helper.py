"""The packaged engine helper: where it is, which data root it uses, and the hint that names it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import REPO_ROOT

from r4b_deploy import paths
from r4b_deploy.engine import ENV_COMMAND, START_COMMAND, helper_command, no_engine_fix, script_path, systemd_runs
from r4b_deploy.pins import gpu_pins


def _where(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(helper_command(["where"]), env=env, capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def test_the_helper_ships_inside_the_package() -> None:
    assert script_path().is_file()
    assert script_path().parent.parent == Path(paths.__file__).resolve().parent


def test_ci_and_users_share_one_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data root is the toolkit's cache folder + docker-engine, however the helper is reached."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    assert _where(env)["data_root"] == f"{tmp_path}/home/.cache/r4b-deploy/docker-engine/data"
    env["R4B_CACHE_DIR"] = str(tmp_path / "cache")
    monkeypatch.setenv("R4B_CACHE_DIR", env["R4B_CACHE_DIR"])
    assert _where(env)["data_root"] == str(paths.cache_dir() / "docker-engine" / "data")
    # The old path from a checkout (kept as a shim) reaches the very same script and data root.
    shim = subprocess.run(
        ["bash", str(REPO_ROOT / ".ci" / "docker-engine.sh"), "where"], env=env, capture_output=True, text=True
    )
    assert shim.returncode == 0 and f"data_root={tmp_path}/cache/docker-engine/data" in shim.stdout


def test_the_helper_reads_the_base_image_the_renderer_writes(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert _where(env)["base_image"] == gpu_pins().base_image


def test_no_engine_hint_names_the_helper_and_systemctl_only_with_systemd(tmp_path: Path) -> None:
    nothing_running = {"R4B_DOCKER_SOCK": str(tmp_path / "absent.sock")}
    without = no_engine_fix(nothing_running, systemd=False)
    assert START_COMMAND in without and ENV_COMMAND in without
    assert "systemctl" not in without
    with_systemd = no_engine_fix(nothing_running, systemd=True)
    assert START_COMMAND in with_systemd and "sudo systemctl start docker" in with_systemd
    assert "--runtime process" in without


def test_a_running_helper_engine_is_pointed_at(tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"
    socket.write_text("")
    hint = no_engine_fix({"R4B_DOCKER_SOCK": str(socket)}, systemd=False)
    assert str(socket) in hint and ENV_COMMAND in hint


def test_systemd_is_detected_by_its_runtime_folder(tmp_path: Path) -> None:
    assert systemd_runs(tmp_path) is True
    assert systemd_runs(tmp_path / "absent") is False


@pytest.mark.parametrize("systemd", [False, True])
def test_doctor_and_up_get_the_hint_from_connect(
    systemd: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up` and `doctor` both word a missing engine through connect(): the real docker-py, no engine."""
    import r4b_deploy.engine as engine
    from r4b_deploy.errors import EnvironmentProblem
    from r4b_deploy.launch.docker_client import connect

    marker = tmp_path / "systemd"
    if systemd:
        marker.mkdir()
    monkeypatch.setattr(engine, "SYSTEMD_MARKER", marker)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EnvironmentProblem) as caught:
        connect(timeout_s=5)
    assert START_COMMAND in caught.value.fix
    assert ("systemctl" in caught.value.fix) is systemd
