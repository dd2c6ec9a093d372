"""`r4b-deploy gpus`: the installed command in a subprocess against the NVML stand-in (exit codes,
stdout, no tracebacks), and its catalog and file modes through main()."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.nvml import (
    INVENTORY_DRIVER_NOT_LOADED,
    INVENTORY_L4,
    INVENTORY_MIXED_L4_A10G,
    INVENTORY_NO_DEVICES,
    MIB,
)
from support import require

from r4b_deploy.cli.main import main
from r4b_deploy.errors import EnvironmentProblem, ExitCode
from r4b_deploy.hardware.inventory import load_inventory_file

pytestmark = pytest.mark.integration

CONSOLE_SCRIPT = Path(sys.executable).parent / "r4b-deploy"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    require(CONSOLE_SCRIPT.exists(), f"the r4b-deploy console script next to {sys.executable} (pip install -e .)")
    return subprocess.run([str(CONSOLE_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def _assert_environment_error(done: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert done.returncode == ExitCode.ENVIRONMENT, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    first, *rest = done.stderr.splitlines()
    assert first.startswith("error: ")
    for phrase in phrases:
        assert phrase in first, first
    assert any(line.strip().startswith("To fix:") and "--gpu" in line for line in rest), done.stderr


# -- the real command against the stand-in -------------------------------------------------------


def test_console_script_prints_the_inventory_as_json(nvml_env, tmp_path: Path) -> None:
    done = _run(["gpus", "--json"], nvml_env(INVENTORY_MIXED_L4_A10G))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    data = json.loads(done.stdout)
    assert data["source"] == "nvml"
    assert [g["name"] for g in data["gpus"]] == ["NVIDIA L4", "NVIDIA A10G"]
    # What a user commits or copies to another machine reads back as the same GPUs.
    saved = tmp_path / "inventory.json"
    saved.write_text(done.stdout)
    loaded = load_inventory_file(saved)
    assert [g.model_dump(mode="json") for g in loaded.gpus] == data["gpus"]


def test_console_script_prints_a_readable_table(nvml_env) -> None:
    done = _run(["gpus"], nvml_env(INVENTORY_L4))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "NVIDIA L4" in out
    assert f"{23034 * MIB / 1024**3:.1f}" in out  # memory in GiB: 22.5
    assert "8.9" in out
    assert "Driver 550.54.15" in out and "CUDA up to 12.4" in out
    assert "GPU-5c1f0b7e" in out


def test_no_devices_exits_2_with_one_line(nvml_env) -> None:
    _assert_environment_error(_run(["gpus", "--json"], nvml_env(INVENTORY_NO_DEVICES)), "no GPUs")


def test_driver_not_loaded_exits_2_and_says_so(nvml_env) -> None:
    _assert_environment_error(_run(["gpus"], nvml_env(INVENTORY_DRIVER_NOT_LOADED)), "driver is not loaded")


def test_library_missing_exits_2_and_names_libnvidia_ml(nvml_env) -> None:
    # nvml_env(None): no stand-in on the loader path (skips where a real NVML is installed).
    _assert_environment_error(_run(["gpus", "--json"], nvml_env(None)), "libnvidia-ml.so.1", "not found")


def test_debug_lets_the_error_through_for_its_traceback(nvml_in_process) -> None:
    nvml_in_process(INVENTORY_NO_DEVICES)
    assert main(["gpus"]) == ExitCode.ENVIRONMENT
    with pytest.raises(EnvironmentProblem, match="no GPUs"):
        main(["--debug", "gpus"])


# -- modes that need no NVML, through main() -----------------------------------------------------


def test_gpu_option_prints_the_catalog_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--gpu", "a100 80gb:2", "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "catalog"
    assert [g["name"] for g in data["gpus"]] == ["A100-80GB", "A100-80GB"]


def test_unknown_gpu_is_a_usage_error_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--gpu", "H10O"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "unknown GPU 'H10O'" in err and "H100-80GB" in err and "r4b-deploy gpus --catalog" in err


def test_catalog_lists_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--catalog", "--json"]) == ExitCode.OK
    names = [e["name"] for e in json.loads(capsys.readouterr().out)]
    assert {"L4", "H100-80GB", "A100-40GB", "T4"} <= set(names)
    assert main(["gpus", "--catalog"]) == ExitCode.OK
    table = capsys.readouterr().out
    assert "RTX-4090" in table and "143771" in table


def test_inventory_file_mode_reads_a_saved_inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["gpus", "--gpu", "L4:2", "--json"]) == ExitCode.OK
    saved = tmp_path / "inv.json"
    saved.write_text(capsys.readouterr().out)
    assert main(["gpus", "--inventory-file", str(saved), "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "file" and len(data["gpus"]) == 2
    assert main(["gpus", "--inventory-file", str(tmp_path / "missing.json")]) == ExitCode.USAGE
    assert "not found" in capsys.readouterr().err


def test_modes_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--gpu", "L4", "--catalog"]) == ExitCode.USAGE
    assert "--gpu and --catalog exclude each other" in capsys.readouterr().err
