"""The GPU catalog: every entry loads, names resolve (NVML names, user spellings), errors help."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from r4b_deploy.errors import ConfigError, ExitCode, UsageError
from r4b_deploy.hardware.catalog import (
    BYTES_PER_MIB,
    MAX_GPU_COUNT,
    catalog,
    catalog_entry,
    inventory_from_catalog,
    load_catalog_file,
    match_catalog,
)
from r4b_deploy.paths import profiles_dir

REQUIRED_MODELS = {
    "L4": (23034, "8.9"),
    "RTX-4090": (24564, "8.9"),
    "RTX-3090": (24576, "8.6"),
    "A10G": (23028, "8.6"),
    "RTX-A6000": (49140, "8.6"),
    "L40S": (46068, "8.9"),
    "A100-40GB": (40960, "8.0"),
    "A100-80GB": (81920, "8.0"),
    "H100-80GB": (81559, "9.0"),
    "H200": (143771, "9.0"),
    "T4": (15360, "7.5"),
    "V100-32GB": (32768, "7.0"),
}

# Names real drivers report -> the entry they must resolve to (None: not in the catalog).
NVML_NAMES = {
    "NVIDIA L4": "L4",
    "NVIDIA GeForce RTX 4090": "RTX-4090",
    "NVIDIA GeForce RTX 3090": "RTX-3090",
    "GeForce RTX 3090": "RTX-3090",  # older drivers: no "NVIDIA " prefix
    "NVIDIA A10G": "A10G",
    "NVIDIA A10": "A10",
    "NVIDIA RTX A6000": "RTX-A6000",
    "NVIDIA RTX 6000 Ada Generation": "RTX-6000-ADA",
    "NVIDIA A40": "A40",
    "NVIDIA L40": "L40",
    "NVIDIA L40S": "L40S",
    "NVIDIA A100-SXM4-40GB": "A100-40GB",
    "NVIDIA A100-PCIE-40GB": "A100-40GB",
    "A100-SXM4-40GB": "A100-40GB",
    "NVIDIA A100-SXM4-80GB": "A100-80GB",
    "NVIDIA A100 80GB PCIe": "A100-80GB",
    "NVIDIA H100 80GB HBM3": "H100-80GB",
    "NVIDIA H100 PCIe": "H100-80GB",
    "NVIDIA H100 NVL": "H100-NVL",
    "NVIDIA H200": "H200",
    "Tesla T4": "T4",
    "Tesla V100-SXM2-32GB": "V100-32GB",
    "Tesla V100-PCIE-32GB": "V100-32GB",
    "NVIDIA GeForce RTX 4090 D": None,
    "NVIDIA GeForce RTX 3090 Ti": None,
    "NVIDIA H100": None,  # also the H100 94 GB: too vague to guess the memory
    "Tesla V100-SXM2-16GB": None,
    "NVIDIA B200": "B200",  # in the catalog since issue 9 (cards people rent today)
}


def test_every_required_model_is_listed_with_its_memory_and_cc() -> None:
    by_name = {e.name: e for e in catalog()}
    for name, (memory_mib, cc) in REQUIRED_MODELS.items():
        assert by_name[name].memory_mib == memory_mib, name
        assert by_name[name].compute_capability == cc, name
        assert by_name[name].memory_total_bytes == memory_mib * BYTES_PER_MIB


def test_the_packaged_file_validates_as_a_whole() -> None:
    entries = load_catalog_file(profiles_dir() / "gpus.yaml").gpus
    assert [e.name for e in entries] == [e.name for e in catalog()]
    assert len({e.name for e in entries}) == len(entries)


@pytest.mark.parametrize(("nvml_name", "expected"), NVML_NAMES.items())
def test_nvml_names_resolve_to_exactly_one_entry(nvml_name: str, expected: str | None) -> None:
    entry = match_catalog(nvml_name)
    assert (entry.name if entry else None) == expected
    assert sum(e.matches_nvml_name(nvml_name) for e in catalog()) == (0 if expected is None else 1)


def test_every_literal_nvml_pattern_resolves_to_its_own_entry() -> None:
    for entry in catalog():
        for pattern in entry.nvml_names:
            if not any(ch in pattern for ch in "*?["):
                assert match_catalog(pattern) == entry, pattern


def test_match_catalog_accepts_canonical_names_but_not_aliases() -> None:
    assert match_catalog("A100-80GB").name == "A100-80GB"  # what catalog inventories carry
    assert match_catalog("h200").name == "H200"
    assert match_catalog("H100") is None  # an alias: users may say it, NVML's "NVIDIA H100" may not


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("A100-80GB", "A100-80GB"),
        ("a100 80gb", "A100-80GB"),
        ("A100_80GB", "A100-80GB"),
        ("a100-sxm4-80gb", "A100-80GB"),
        ("H100", "H100-80GB"),
        ("h100 nvl", "H100-NVL"),
        ("rtx4090", "RTX-4090"),
        ("RTX 4090", "RTX-4090"),
        ("GeForce RTX 4090", "RTX-4090"),
        ("4090", "RTX-4090"),
        ("nvidia l4", "L4"),
        ("l4", "L4"),
        ("tesla t4", "T4"),
        ("v100", "V100-32GB"),
        ("A6000", "RTX-A6000"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
    ],
)
def test_user_spellings_resolve(typed: str, expected: str) -> None:
    assert catalog_entry(typed).name == expected


def test_unknown_name_lists_the_closest_names_and_the_list_command() -> None:
    with pytest.raises(UsageError) as err:
        catalog_entry("H10O")
    assert "unknown GPU 'H10O'" in err.value.message
    assert "H100-80GB" in err.value.message
    assert "r4b-deploy gpus --catalog" in (err.value.fix or "")
    assert err.value.exit_code == ExitCode.USAGE


def test_a_name_that_starts_several_entries_is_ambiguous() -> None:
    with pytest.raises(UsageError, match=r"'A100' is ambiguous: A100-40GB, A100-80GB"):
        catalog_entry("A100")


def test_a_name_far_from_everything_gets_no_misleading_suggestions() -> None:
    with pytest.raises(UsageError) as err:
        catalog_entry("zzzzzz")
    assert "closest" not in err.value.message


def test_inventory_from_catalog_builds_count_identical_gpus() -> None:
    inventory = inventory_from_catalog("A100-80GB:8")
    assert inventory.source == "catalog"
    assert [g.index for g in inventory.gpus] == list(range(8))
    assert {g.name for g in inventory.gpus} == {"A100-80GB"}
    assert {g.memory_total_bytes for g in inventory.gpus} == {81920 * BYTES_PER_MIB}
    assert {g.compute_capability for g in inventory.gpus} == {"8.0"}
    assert all(g.memory_free_bytes is None and g.uuid is None for g in inventory.gpus)
    assert inventory.nvlink_pairs == []
    assert any("not measured" in note for note in inventory.notes)
    assert any("NVLink" in note and "not assumed" in note for note in inventory.notes)


def test_inventory_from_catalog_defaults_to_one_gpu_and_tolerates_spacing() -> None:
    assert inventory_from_catalog("l4").gpu_count == 1
    assert inventory_from_catalog("  rtx4090 : 2 ").gpu_count == 2
    assert inventory_from_catalog(f"T4:{MAX_GPU_COUNT}").gpu_count == MAX_GPU_COUNT


def test_a_nominal_memory_figure_says_so() -> None:
    (note,) = inventory_from_catalog("L40").notes
    assert "nominal" in note
    assert "as NVML reports it" in inventory_from_catalog("L40S").notes[0]


@pytest.mark.parametrize("spec", ["L4:0", "L4:-1", "L4:x", "L4:", "L4:1.5", "L4:2:3", f"L4:{MAX_GPU_COUNT + 1}"])
def test_bad_counts_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError, match="GPU count"):
        inventory_from_catalog(spec)


@pytest.mark.parametrize("spec", ["", "  ", ":2"])
def test_a_missing_name_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError, match="has no name"):
        inventory_from_catalog(spec)


# -- malformed catalog files -----------------------------------------------------------------


def _packaged_data() -> dict:
    return yaml.safe_load((profiles_dir() / "gpus.yaml").read_text())


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_a_bad_value_names_file_entry_and_field(tmp_path: Path) -> None:
    data = _packaged_data()
    index = next(i for i, e in enumerate(data["gpus"]) if e["name"] == "A10G")
    data["gpus"][index]["memory_mib"] = 0
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_catalog_file(path)
    assert str(path) in err.value.message
    assert f"gpus[{index} (A10G)].memory_mib" in err.value.message
    assert "greater than 0" in err.value.message
    assert err.value.exit_code == ExitCode.USAGE


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    data = _packaged_data()
    data["gpus"][0]["memory_gb"] = 16
    with pytest.raises(ConfigError, match=r"gpus\[0 \(T4\)\]\.memory_gb.*Extra inputs"):
        load_catalog_file(_write(tmp_path, data))


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    data = _packaged_data()
    del data["gpus"][1]["compute_capability"]
    with pytest.raises(ConfigError, match=r"compute_capability.*Field required"):
        load_catalog_file(_write(tmp_path, data))


def test_a_name_claimed_by_two_entries_is_refused(tmp_path: Path) -> None:
    data = _packaged_data()
    data["gpus"][0]["aliases"] = ["L4"]  # T4 claiming the L4's name
    with pytest.raises(ConfigError, match="belongs to both"):
        load_catalog_file(_write(tmp_path, data))


def test_broken_yaml_and_missing_files_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "gpus: [name: L4\n")
    with pytest.raises(ConfigError, match=rf"{path}: the GPU catalog is not valid YAML"):
        load_catalog_file(path)
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=rf"{missing}: cannot read"):
        load_catalog_file(missing)
    with pytest.raises(ConfigError, match=r"field 'gpus'"):
        load_catalog_file(_write(tmp_path, {"gpus": []}))
