"""The probe's pure helpers (no NVML needed): CUDA version format, PCI addresses, note grouping."""

from __future__ import annotations

import pytest

from r4b_deploy.hardware.probe import _Notes, _pci_address, format_cuda_version


@pytest.mark.parametrize(
    ("nvml_value", "text"), [(12040, "12.4"), (12020, "12.2"), (11080, "11.8"), (13000, "13.0"), (12090, "12.9")]
)
def test_cuda_version_as_people_write_it(nvml_value: int, text: str) -> None:
    assert format_cuda_version(nvml_value) == text


def test_pci_address_matches_nvml_struct_fields() -> None:
    assert _pci_address("00000000:18:00.0") == (0, 0x18, 0)
    assert _pci_address("00000001:C6:1F.0") == (1, 0xC6, 0x1F)
    assert _pci_address("0000:18:00.0") == (0, 0x18, 0)  # the legacy short form
    assert _pci_address("garbage") is None


def test_notes_group_the_same_gap_across_gpus() -> None:
    notes = _Notes()
    notes.add("MIG mode unknown", 0)
    notes.add("system-wide", None)
    notes.add("MIG mode unknown", 3)
    notes.add("MIG mode unknown", 3)
    notes.add("only one", 2)
    assert notes.lines() == ["GPUs 0, 3: MIG mode unknown", "system-wide", "GPU 2: only one"]
