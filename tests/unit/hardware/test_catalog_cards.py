"""The catalog's newer cards and the CUDA-visible totals (issue 9), and cards described on the
command line (`--gpu 16GiB@8.9[:COUNT]`) for GPUs the catalog does not list."""

from __future__ import annotations

import pytest

from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.catalog import catalog, catalog_entry, inventory_from_catalog, match_catalog, parse_gpu_spec

MIB = 1024**2

NEW_CARDS = {
    "NVIDIA B200": "B200",
    "NVIDIA GeForce RTX 5090": "RTX-5090",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": "RTX-PRO-6000-BLACKWELL",
    "NVIDIA H20": "H20",
    "NVIDIA L20": "L20",
    "NVIDIA GH200 480GB": "GH200",
    "NVIDIA GeForce RTX 4060": "RTX-4060",
    "NVIDIA GeForce RTX 4060 Ti": "RTX-4060-TI-16GB",
    "NVIDIA GeForce RTX 4070": "RTX-4070",
    "NVIDIA GeForce RTX 4080 SUPER": "RTX-4080",
    "NVIDIA GeForce RTX 3060": "RTX-3060-12GB",
    "NVIDIA A2": "A2",
    "NVIDIA A16": "A16",
    "NVIDIA GeForce RTX 4070 Ti SUPER": None,  # 16 GB, unlike the 12 GB 4070: not guessed
}


@pytest.mark.parametrize(("nvml_name", "expected"), NEW_CARDS.items())
def test_new_cards_resolve(nvml_name: str, expected: str | None) -> None:
    entry = match_catalog(nvml_name)
    assert (entry.name if entry else None) == expected


def test_every_entry_names_its_source() -> None:
    for entry in catalog():
        assert entry.source.strip(), entry.name
        if entry.cuda_total_mib is not None:
            # CUDA reports less than NVML on the same card, by 0.4-0.75 GiB in the logs seen.
            assert 0.4 * 1024 <= entry.memory_mib - entry.cuda_total_mib <= 0.8 * 1024, entry.name
            assert entry.cuda_total_source, entry.name


@pytest.mark.parametrize(
    ("spec", "memory_mib", "cc", "count"),
    [
        ("16GiB@8.9", 16384, "8.9", 1),
        ("12GB@8.6:2", 11444, "8.6", 2),  # 12 x 10^9 bytes
        ("24576MiB@8.9", 24576, "8.9", 1),
        (" 80 GiB @ 9.0 :8", 81920, "9.0", 8),
        ("32gib@12.0", 32768, "12.0", 1),
    ],
)
def test_described_card(spec: str, memory_mib: int, cc: str, count: int) -> None:
    entry, parsed_count = parse_gpu_spec(spec)
    assert (entry.memory_mib, entry.compute_capability, parsed_count) == (memory_mib, cc, count)
    assert entry.cuda_total_mib is None  # CUDA's total: NVML's less memory.yaml's margin
    inventory = inventory_from_catalog(spec)
    assert len(inventory.gpus) == count
    assert all(g.memory_total_bytes == memory_mib * MIB and g.compute_capability == cc for g in inventory.gpus)
    assert inventory.notes[0].startswith("described, not measured")


@pytest.mark.parametrize("spec", ["0GiB@8.9", "16GiB@6.1", "2048GiB@9.0"])
def test_described_card_out_of_bounds(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_gpu_spec(spec)
    assert "MEMORY@COMPUTE" in (info.value.fix or "")


@pytest.mark.parametrize("spec", ["16GiB", "16GiB@", "@8.9", "16TB@8.9"])
def test_malformed_description_is_an_unknown_name(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_gpu_spec(spec)


def test_described_card_does_not_shadow_catalog_names() -> None:
    assert catalog_entry("a100 80gb").name == "A100-80GB"
    assert parse_gpu_spec("A100-80GB:8")[0].name == "A100-80GB"
