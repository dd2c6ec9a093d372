"""Which GPUs to plan for: named from the catalog, read from a file, or measured through NVML.

Each source is imported only when asked for: naming a GPU must not load pynvml.
"""

from __future__ import annotations

from pathlib import Path

from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import Inventory, load_inventory_file


def resolve_inventory(gpu: str | None = None, inventory_file: Path | None = None) -> Inventory:
    """`gpu` ("L4", "A100-80GB:8") from the catalog, else `inventory_file` (from `gpus --json`),
    else the GPUs NVML measures on this machine. Both given is a UsageError."""
    if gpu and inventory_file:
        raise UsageError(
            "--gpu and --inventory both say which GPUs to plan for",
            fix="give one: --gpu NAME[:COUNT] to plan without a GPU, or --inventory FILE from `r4b-deploy gpus --json`",
        )
    if gpu:
        from r4b_deploy.hardware.catalog import inventory_from_catalog

        return inventory_from_catalog(gpu)
    if inventory_file:
        return load_inventory_file(inventory_file)
    from r4b_deploy.hardware.probe import probe_inventory

    return probe_inventory()
