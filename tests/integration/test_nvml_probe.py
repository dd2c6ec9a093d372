"""probe_inventory() through the real pynvml against the compiled NVML stand-in.

The inventories that matter are checked both in this process and through the real CLI in a
subprocess (`r4b-deploy gpus --json`); failure cases and NVML quirks run in-process only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.nvml import (
    INVENTORY_A100_MIG,
    INVENTORY_A100_X4_BRIDGED,
    INVENTORY_DRIVER_NOT_LOADED,
    INVENTORY_H100_X8_NVSWITCH,
    INVENTORY_L4,
    INVENTORY_MIXED_L4_A10G,
    INVENTORY_NO_DEVICES,
    MIB,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_STANDIN_CONFIG_ENV,
    standin_gpu,
)

from r4b_deploy.errors import EnvironmentProblem, ExitCode
from r4b_deploy.hardware.inventory import Inventory, load_inventory_file
from r4b_deploy.hardware.probe import probe_inventory

pytestmark = pytest.mark.integration

Probe = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(params=["in_process", "subprocess"])
def probe_json(request: pytest.FixtureRequest) -> Probe:
    """Probe an inventory and return the Inventory as JSON data, in either style."""
    if request.param == "in_process":
        use = request.getfixturevalue("nvml_in_process")

        def in_process(inventory: dict[str, Any]) -> dict[str, Any]:
            use(inventory)
            return probe_inventory().model_dump(mode="json")

        return in_process

    make_env = request.getfixturevalue("nvml_env")

    def via_cli(inventory: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "r4b_deploy", "gpus", "--json"],
            env=make_env(inventory),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return json.loads(done.stdout)

    return via_cli


# -- the inventories that matter, both styles --------------------------------------------------


def test_single_l4(probe_json: Probe) -> None:
    assert probe_json(INVENTORY_L4) == {
        "source": "nvml",
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA L4",
                "uuid": "GPU-5c1f0b7e-0000-4000-8000-000000000001",
                "pci_bus_id": "00000000:01:00.0",
                "memory_total_bytes": 23034 * MIB,
                "memory_free_bytes": 23033 * MIB,
                "compute_capability": "8.9",
                "mig_enabled": None,  # the L4 has no MIG: NOT_SUPPORTED is an answer, not a gap
                "nvlink_active_links": 0,
            }
        ],
        "nvlink_pairs": [],
        "notes": [],
    }


def test_eight_h100_on_nvswitch_are_all_pairwise_linked(probe_json: Probe) -> None:
    inv = probe_json(INVENTORY_H100_X8_NVSWITCH)
    assert (inv["driver_version"], inv["cuda_driver_version"]) == ("535.104.05", "12.2")
    assert [g["index"] for g in inv["gpus"]] == list(range(8))
    assert {g["nvlink_active_links"] for g in inv["gpus"]} == {18}
    assert {g["mig_enabled"] for g in inv["gpus"]} == {False}
    assert {g["memory_total_bytes"] for g in inv["gpus"]} == {81559 * MIB}
    assert inv["gpus"][7]["pci_bus_id"] == "00000000:1F:00.0"
    assert len({g["uuid"] for g in inv["gpus"]}) == 8
    assert len(inv["nvlink_pairs"]) == 28
    assert inv["nvlink_pairs"][0] == [0, 1] and inv["nvlink_pairs"][-1] == [6, 7]
    assert inv["notes"] == ["GPUs 0, 1, 2, 3, 4, 5, 6, 7 share an NVSwitch fabric: every pair is NVLinked"]


def test_mig_a100_without_memory_info_uses_the_catalog_and_says_so(probe_json: Probe) -> None:
    (gpu,) = probe_json(INVENTORY_A100_MIG)["gpus"]
    assert gpu["mig_enabled"] is True
    assert gpu["memory_total_bytes"] == 40960 * MIB  # profiles/gpus.yaml's A100-40GB
    assert gpu["memory_free_bytes"] is None
    assert gpu["compute_capability"] == "8.0"


def test_mixed_gpus_keep_their_own_facts(nvml_in_process) -> None:
    # The subprocess style of this inventory: test_gpus_cli.py's console-script test.
    nvml_in_process(INVENTORY_MIXED_L4_A10G)
    inv = probe_inventory().model_dump(mode="json")
    assert [(g["name"], g["compute_capability"]) for g in inv["gpus"]] == [("NVIDIA L4", "8.9"), ("NVIDIA A10G", "8.6")]
    assert [g["memory_free_bytes"] for g in inv["gpus"]] == [22034 * MIB, 23028 * MIB]
    assert [g["pci_bus_id"] for g in inv["gpus"]] == ["00000000:01:00.0", "00000000:02:00.0"]
    assert not Inventory.model_validate(inv).homogeneous


# -- in-process details ------------------------------------------------------------------------


def test_bridged_pairs_map_the_far_end_back_to_gpu_indices(nvml_in_process) -> None:
    nvml_in_process(INVENTORY_A100_X4_BRIDGED)
    inv = probe_inventory()
    assert inv.nvlink_pairs == [(0, 1), (2, 3)]
    assert {g.nvlink_active_links for g in inv.gpus} == {12}
    assert inv.nvlinked(1, 0) and not inv.nvlinked(1, 2)
    assert inv.notes == []


def test_inactive_links_are_not_counted(nvml_in_process) -> None:
    inventory = json.loads(json.dumps(INVENTORY_A100_X4_BRIDGED))
    for device in inventory["devices"][2:]:
        device["nvlink_active"] = 0  # bridge 2-3 is down
    nvml_in_process(inventory)
    inv = probe_inventory()
    assert inv.nvlink_pairs == [(0, 1)]
    assert [g.nvlink_active_links for g in inv.gpus] == [12, 12, 0, 0]


def test_mig_memory_fallback_is_explained_in_the_notes(nvml_in_process) -> None:
    nvml_in_process(INVENTORY_A100_MIG)
    notes = probe_inventory().notes
    assert any(n.startswith("GPU 0: NVML does not report memory") and "40960 MiB for A100-40GB" in n for n in notes), (
        notes
    )
    assert any("MIG is enabled" in n for n in notes), notes


def test_memory_not_supported_on_an_unknown_model_is_an_environment_problem(nvml_in_process) -> None:
    # A name the catalog does not know (B200 was unknown once; it is in the catalog now).
    nvml_in_process({"devices": [standin_gpu("NVIDIA X9", 183359, (10, 0), fail={"nvmlDeviceGetMemoryInfo": 3})]})
    with pytest.raises(EnvironmentProblem, match="does not know that model") as err:
        probe_inventory()
    assert "--gpu" in (err.value.fix or "")


def test_a_pending_mig_change_is_noted(nvml_in_process) -> None:
    nvml_in_process({"devices": [standin_gpu("NVIDIA A100-SXM4-80GB", 81920, (8, 0), mig_mode=0, mig_pending=1)]})
    inv = probe_inventory()
    assert inv.gpus[0].mig_enabled is False
    assert inv.notes == ["GPU 0: a MIG mode change is pending until the GPU is reset"]


def test_each_probe_reads_the_inventory_afresh(nvml_in_process) -> None:
    nvml_in_process(INVENTORY_L4)
    assert probe_inventory().gpu_count == 1
    nvml_in_process(INVENTORY_H100_X8_NVSWITCH)
    assert probe_inventory().gpu_count == 8


def test_probe_output_round_trips_through_an_inventory_file(nvml_in_process, tmp_path: Path) -> None:
    nvml_in_process(INVENTORY_H100_X8_NVSWITCH)
    measured = probe_inventory()
    path = tmp_path / "inventory.json"
    path.write_text(measured.model_dump_json())
    loaded = load_inventory_file(path)
    assert loaded.gpus == measured.gpus
    assert loaded.nvlink_pairs == measured.nvlink_pairs
    assert loaded.source == "file"


# -- no usable NVML ----------------------------------------------------------------------------


def test_no_devices(nvml_in_process) -> None:
    nvml_in_process(INVENTORY_NO_DEVICES)
    with pytest.raises(EnvironmentProblem) as err:
        probe_inventory()
    assert err.value.message == "NVML found no GPUs (driver 550.54.15 loaded, 0 devices)"
    assert "r4b-deploy plan --gpu L4" in (err.value.fix or "")
    assert err.value.exit_code == ExitCode.ENVIRONMENT


def test_driver_not_loaded(nvml_in_process) -> None:
    nvml_in_process(INVENTORY_DRIVER_NOT_LOADED)
    with pytest.raises(EnvironmentProblem, match="NVIDIA driver is not loaded") as err:
        probe_inventory()
    assert "modprobe nvidia" in (err.value.fix or "") and "--gpu" in (err.value.fix or "")


def test_no_permission(nvml_in_process) -> None:
    nvml_in_process({"init_error": NVML_ERROR_NO_PERMISSION})
    with pytest.raises(EnvironmentProblem, match="no permission"):
        probe_inventory()


def test_a_broken_standin_config_fails_loudly_not_as_zero_gpus(nvml_in_process, monkeypatch, tmp_path: Path) -> None:
    nvml_in_process(INVENTORY_L4)
    (tmp_path / "typo.json").write_text(json.dumps({"devices": [{"nmae": "NVIDIA L4"}]}))
    monkeypatch.setenv(NVML_STANDIN_CONFIG_ENV, str(tmp_path / "typo.json"))
    with pytest.raises(EnvironmentProblem, match="NVML initialisation failed: Unknown Error"):
        probe_inventory()


# -- FunctionNotFound is never "not supported" ----------------------------------------------------


@pytest.mark.parametrize(
    ("function", "fact"),
    [
        ("nvmlDeviceGetCudaComputeCapability", "compute capability"),
        ("nvmlDeviceGetMemoryInfo", "memory"),  # NOT the catalog fallback: the library is too old
        ("nvmlDeviceGetName", "name"),
        ("nvmlDeviceGetCount_v2", "GPU count"),
    ],
)
def test_a_missing_function_for_a_required_fact_is_an_environment_problem(
    nvml_in_process, function: str, fact: str
) -> None:
    nvml_in_process({"fail": {function: NVML_ERROR_FUNCTION_NOT_FOUND}, "devices": INVENTORY_L4["devices"]})
    with pytest.raises(EnvironmentProblem, match=rf"libnvidia-ml.so.1 lacks .*{fact}.*older than nvidia-ml-py") as err:
        probe_inventory()
    assert "update the NVIDIA driver" in (err.value.fix or "")


def test_a_missing_function_for_an_optional_fact_is_a_note(nvml_in_process) -> None:
    devices = [
        standin_gpu(
            "NVIDIA A100-SXM4-80GB", 81920, (8, 0), mig_mode=1, nvlink_links=12, pci_bus_id=f"00000000:0{i}:00.0"
        )
        for i in (1, 2)
    ]
    fail = {"nvmlDeviceGetMigMode": NVML_ERROR_FUNCTION_NOT_FOUND, "nvmlDeviceGetNvLinkState": 13}
    nvml_in_process({"fail": fail, "devices": devices})
    inv = probe_inventory()
    assert [g.mig_enabled for g in inv.gpus] == [None, None]
    assert [g.nvlink_active_links for g in inv.gpus] == [0, 0]
    assert any(n.startswith("GPUs 0, 1: MIG mode unknown") and "lacks" in n for n in inv.notes), inv.notes
    assert any(n.startswith("GPUs 0, 1: NVLink unknown") and "lacks" in n for n in inv.notes), inv.notes


def test_other_failures_of_optional_facts_are_notes_not_silence(nvml_in_process) -> None:
    device = standin_gpu("NVIDIA L4", 23034, (8, 9), fail={"nvmlDeviceGetUUID": NVML_ERROR_NO_PERMISSION})
    nvml_in_process({"fail": {"nvmlSystemGetCudaDriverVersion": NVML_ERROR_NOT_SUPPORTED}, "devices": [device]})
    inv = probe_inventory()
    assert inv.gpus[0].uuid is None
    assert inv.cuda_driver_version is None  # NOT_SUPPORTED: no note needed
    assert inv.notes == ["GPU 0: UUID unknown: NVML says Insufficient Permissions"]
