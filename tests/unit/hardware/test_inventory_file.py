"""load_inventory_file: what `r4b-deploy gpus --json` wrote on another machine, read back strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r4b_deploy.errors import ExitCode, UsageError
from r4b_deploy.hardware.inventory import GPU, Inventory, load_inventory_file

GIB = 1024**3


def _measured() -> Inventory:
    gpus = [
        GPU(
            index=i,
            name="NVIDIA H100 80GB HBM3",
            uuid=f"GPU-{i}",
            pci_bus_id=f"00000000:{0x18 + i:02X}:00.0",
            memory_total_bytes=80 * GIB,
            memory_free_bytes=79 * GIB,
            compute_capability="9.0",
            mig_enabled=False,
            nvlink_active_links=18,
        )
        for i in range(2)
    ]
    return Inventory(
        source="nvml",
        driver_version="535.104.05",
        cuda_driver_version="12.2",
        gpus=gpus,
        nvlink_pairs=[(0, 1)],
        notes=["a note from the probe"],
    )


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "inventory.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_round_trip_keeps_every_fact_and_says_where_it_came_from(tmp_path: Path) -> None:
    original = _measured()
    path = _write(tmp_path, original.model_dump(mode="json"))
    loaded = load_inventory_file(path)
    assert loaded.source == "file"
    assert loaded.gpus == original.gpus
    assert loaded.nvlink_pairs == [(0, 1)]
    assert (loaded.driver_version, loaded.cuda_driver_version) == ("535.104.05", "12.2")
    assert loaded.notes[0] == "a note from the probe"
    assert loaded.notes[-1] == f"read from {path} (measured there by nvml)"
    assert load_inventory_file(str(path)).gpus == original.gpus  # a str path works too


def test_helpers_on_the_loaded_inventory(tmp_path: Path) -> None:
    loaded = load_inventory_file(_write(tmp_path, _measured().model_dump(mode="json")))
    assert loaded.gpu_count == 2
    assert loaded.homogeneous
    assert loaded.min_memory_total_bytes == 80 * GIB
    assert loaded.nvlinked(1, 0) and not loaded.nvlinked(0, 0)


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        load_inventory_file(tmp_path / "nope.json")
    assert "not found" in err.value.message
    assert "r4b-deploy gpus --json" in (err.value.fix or "")
    assert err.value.exit_code == ExitCode.USAGE


def test_not_json_gives_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is not JSON: .* line 2 column"):
        load_inventory_file(_write(tmp_path, '{"gpus": [\n oops]}'))


def test_a_json_list_is_not_an_inventory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="expected a JSON object, found list"):
        load_inventory_file(_write(tmp_path, []))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["gpus"][1].update(memory_total_bytes=-1), "gpus.1.memory_total_bytes"),
        (lambda d: d["gpus"][0].update(compute_capability="nine"), "gpus.0.compute_capability"),
        (lambda d: d["gpus"][0].pop("name"), "gpus.0.name"),
        (lambda d: d.update(extra_field=1), "extra_field"),
        (lambda d: d.pop("gpus"), "gpus"),
    ],
)
def test_invalid_fields_are_named_by_path(tmp_path: Path, mutate, field: str) -> None:
    data = _measured().model_dump(mode="json")
    mutate(data)
    with pytest.raises(UsageError, match=rf"field '{field}'"):
        load_inventory_file(_write(tmp_path, data))


def test_inconsistent_inventories_are_refused(tmp_path: Path) -> None:
    data = _measured().model_dump(mode="json")
    with pytest.raises(UsageError, match="lists no GPU"):
        load_inventory_file(_write(tmp_path, {**data, "gpus": [], "nvlink_pairs": []}))
    with pytest.raises(UsageError, match="indices repeat"):
        load_inventory_file(_write(tmp_path, {**data, "gpus": [data["gpus"][0], data["gpus"][0]]}))
    with pytest.raises(UsageError, match=r"field 'nvlink_pairs.0': \(0, 5\)"):
        load_inventory_file(_write(tmp_path, {**data, "nvlink_pairs": [[0, 5]]}))


def test_mixed_inventory_is_not_homogeneous() -> None:
    inv = _measured()
    mixed = inv.model_copy(update={"gpus": [inv.gpus[0], inv.gpus[1].model_copy(update={"memory_total_bytes": GIB})]})
    assert not mixed.homogeneous
    assert mixed.min_memory_total_bytes == GIB


# Hostile files: each is the user's input to correct (exit 4), never an internal error.
def _gpu(**fields: object) -> dict:
    return {"index": 0, "name": "X", "memory_total_bytes": 80 * GIB, "compute_capability": "9.0", **fields}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[" * 10_000 + "]" * 10_000, "nested too deep"),
        ('{"gpus": [{"index": ' + "9" * 5000 + "}]}", "number too long"),
        (b'\xff\xfe{"gpus": []}', "not UTF-8"),
        (b" " * (2 * 1024**2) + b"{}", "larger than"),
        ({"source": "nvml", "gpus": [_gpu(memory_total_bytes=10**400)]}, "memory_total_bytes"),
        ({"source": "nvml", "gpus": [_gpu(memory_free_bytes=2**64)]}, "memory_free_bytes"),
        ({"source": "nvml", "gpus": [_gpu(index=10**300)]}, "index"),
        ({"source": "nvml", "gpus": [_gpu(compute_capability="9" * 4000 + ".0")]}, "compute_capability"),
        # The planner chooses the vLLM release by the driver: a version it cannot compare is the file's fault.
        ({"source": "nvml", "driver_version": "banana", "gpus": [_gpu()]}, "driver_version"),
        ({"source": "nvml", "driver_version": "5" * 5000, "gpus": [_gpu()]}, "driver_version"),
        ({"source": "nvml", "cuda_driver_version": "twelve", "gpus": [_gpu()]}, "cuda_driver_version"),
    ],
)
def test_hostile_file_is_a_usage_error(content: object, match: str, tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UsageError, match=match) as caught:
        load_inventory_file(path)
    assert caught.value.exit_code == ExitCode.USAGE
    assert len(caught.value.message) < 300 and "\n" not in caught.value.message
