"""Which GPUs to plan for: a catalog name, an inventory file, never both."""

from __future__ import annotations

from pathlib import Path

import pytest

from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import GPU, Inventory
from r4b_deploy.hardware.resolve import resolve_inventory

MIB = 1024**2


def test_resolve_inventory_by_name_and_file(tmp_path: Path) -> None:
    named = resolve_inventory(gpu="L4:2")
    assert named.source == "catalog" and len(named.gpus) == 2
    path = tmp_path / "inventory.json"
    measured = Inventory(
        source="nvml",
        gpus=[GPU(index=i, name="H100-80GB", memory_total_bytes=81559 * MIB, compute_capability="9.0") for i in (0, 1)],
    )
    path.write_text(measured.model_dump_json())
    from_file = resolve_inventory(inventory_file=path)
    assert from_file.source == "file" and from_file.gpus[0].name == "H100-80GB"


def test_gpu_and_inventory_together_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--gpu and --inventory"):
        resolve_inventory(gpu="L4", inventory_file=tmp_path / "x.json")
