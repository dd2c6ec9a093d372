"""doctor: each check on real inputs (a real socket, real folders, the NVML stand-in in a subprocess)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from fixtures.nvml import INVENTORY_L4, r4b_deploy_command, standin_gpu

from r4b_deploy.launch import doctor
from r4b_deploy.launch.ports import free_port
from r4b_deploy.pins import gpu_pins


def test_version_tuple_orders_driver_versions() -> None:
    assert doctor.version_tuple("550.54.15") == (550, 54, 15)
    assert doctor.version_tuple("525.60.13") < doctor.version_tuple("550.54.15") < doctor.version_tuple("570.26")
    assert doctor.version_tuple("12.4") < doctor.version_tuple("12.8")
    assert doctor.version_tuple("12.10") > doctor.version_tuple("12.8")


def test_disk_check_levels(tmp_path: Path) -> None:
    assert doctor.disk_check("d", tmp_path, 1, "x").status == "pass"
    failing = doctor.disk_check("d", tmp_path, 10**18, "the weights")
    assert failing.status == "fail" and failing.fix and "the weights" in failing.message


def test_disk_check_looks_at_the_nearest_existing_folder(tmp_path: Path) -> None:
    check = doctor.disk_check("d", tmp_path / "not" / "yet" / "made", 1, "x")
    assert check.status == "pass"
    assert str(tmp_path) in check.message


def test_port_check_fails_on_a_real_listener() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        check = doctor.check_port(port, public=False)
        assert check.status == "fail" and str(port) in check.message and check.fix
    assert doctor.check_port(port, public=False).status == "pass"


def test_hf_token_is_only_a_warning_for_the_public_model() -> None:
    assert doctor.check_hf_token("HF_TOKEN", {}, rehearsal=False, gated=False).status == "warn"
    assert doctor.check_hf_token("HF_TOKEN", {"HF_TOKEN": "hf_x"}, rehearsal=False, gated=False).status == "pass"
    assert doctor.check_hf_token("MY_TOKEN", {"HF_TOKEN": "hf_x"}, rehearsal=False, gated=True).status == "fail"
    assert doctor.check_hf_token("HF_TOKEN", {}, rehearsal=True, gated=True).status == "skip"


def test_hf_token_value_never_appears_in_the_report() -> None:
    check = doctor.check_hf_token("HF_TOKEN", {"HF_TOKEN": "hf_secret_value"}, rehearsal=False, gated=False)
    assert "hf_secret_value" not in check.model_dump_json()


def test_shm_matters_for_the_process_runtime() -> None:
    check = doctor.check_shm("process", ipc_host=False)
    assert check.status in ("pass", "fail")
    assert "/dev/shm" in check.message


def test_rehearsal_skips_the_gpu_checks() -> None:
    driver, cuda = doctor.check_driver(rehearsal=True)
    assert driver.status == cuda.status == "skip"


def _doctor_json(env: dict[str, str], *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [*r4b_deploy_command(), "doctor", "--json", "--runtime", "process", "--no-gpu-probe", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.integration
def test_driver_between_minimum_and_recommended_warns(nvml_env) -> None:
    # L4 stand-in: driver 550.54.15, CUDA 12.4: above the 525.60.13 floor, below 570.26 / CUDA 12.8.
    rc, report = _doctor_json(nvml_env(INVENTORY_L4), "--port", str(free_port()))
    driver, cuda = _check(report, "driver"), _check(report, "cuda")
    assert driver["status"] == "warn" and "550.54.15" in driver["message"] and "NVIDIA L4" in driver["message"]
    assert gpu_pins().recommended_driver_version in driver["fix"]
    assert cuda["status"] == "warn" and "12.4" in cuda["message"]
    assert rc in (0, 1)  # other checks depend on this machine; the driver lines are what is tested


@pytest.mark.integration
def test_new_driver_passes(nvml_env) -> None:
    inventory = {
        "driver_version": "580.65.06",
        "cuda_driver_version": 13000,
        "devices": [standin_gpu("NVIDIA H100 80GB HBM3", 81559, (9, 0))],
    }
    _, report = _doctor_json(nvml_env(inventory), "--port", str(free_port()))
    assert _check(report, "driver")["status"] == "pass"
    assert _check(report, "cuda")["status"] == "pass"


@pytest.mark.integration
def test_old_driver_fails_with_exit_1(nvml_env) -> None:
    inventory = {
        "driver_version": "470.182.03",
        "cuda_driver_version": 11040,
        "devices": [standin_gpu("Tesla T4", 15360, (7, 5))],
    }
    rc, report = _doctor_json(nvml_env(inventory), "--port", str(free_port()))
    driver = _check(report, "driver")
    assert driver["status"] == "fail" and gpu_pins().min_driver_version in driver["message"]
    assert _check(report, "cuda")["status"] == "fail"
    assert rc == 1 and report["ok"] is False


@pytest.mark.integration
def test_no_driver_library_fails(nvml_env) -> None:
    rc, report = _doctor_json(nvml_env(None), "--port", str(free_port()))
    driver = _check(report, "driver")
    assert driver["status"] == "fail" and "libnvidia-ml" in driver["message"]
    assert "--rehearsal" in driver["fix"]
    assert rc == 1


def test_no_docker_engine_is_one_failed_line(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"}
    proc = subprocess.run(
        [*r4b_deploy_command(), "doctor", "--json", "--rehearsal", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(proc.stdout)
    docker_check = _check(report, "docker")
    assert docker_check["status"] == "fail"
    assert "no-such.sock" in docker_check["message"] and "--runtime process" in docker_check["fix"]
    assert proc.returncode == 1
