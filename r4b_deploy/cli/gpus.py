"""`r4b-deploy gpus`: measure the GPUs through NVML (or show a named or saved inventory) and print it.

`--json` writes the Inventory itself: save it on the GPU machine and plan anywhere from that
file (PlanRequest.inventory_file). Library calls are imported inside the command, and rich
only for the table, so the command starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from r4b_deploy.hardware.catalog import GpuCatalogEntry
    from r4b_deploy.hardware.inventory import Inventory

_DASH = "-"


@click.command("gpus")
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON: a file to plan from elsewhere.")
@click.option(
    "--gpu",
    "gpu_spec",
    metavar="NAME[:COUNT]",
    help="Show what the planner assumes for GPUs named from the catalog, e.g. A100-80GB:8, instead of measuring.",
)
@click.option(
    "--inventory-file",
    "inventory_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Show an inventory file written by `r4b-deploy gpus --json`, instead of measuring.",
)
@click.option("--catalog", "show_catalog", is_flag=True, help="List the GPU models the catalog knows.")
def command(as_json: bool, gpu_spec: str | None, inventory_file: Path | None, show_catalog: bool) -> None:
    """Measure the GPUs through NVML and print the inventory."""
    from r4b_deploy.cli.output import print_json
    from r4b_deploy.errors import UsageError

    chosen = [name for name, value in (("--gpu", gpu_spec), ("--inventory-file", inventory_file)) if value]
    if show_catalog:
        chosen.append("--catalog")
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} exclude each other", fix="give one of them, or none to measure")

    if show_catalog:
        from r4b_deploy.hardware.catalog import catalog

        entries = catalog()
        if as_json:
            print_json(list(entries))
        else:
            _print_catalog(entries)
        return

    inventory = _inventory(gpu_spec, inventory_file)
    if as_json:
        print_json(inventory)
    else:
        _print_inventory(inventory)


def _inventory(gpu_spec: str | None, inventory_file: Path | None) -> Inventory:
    if gpu_spec:
        from r4b_deploy.hardware.catalog import inventory_from_catalog

        return inventory_from_catalog(gpu_spec)
    if inventory_file:
        from r4b_deploy.hardware.inventory import load_inventory_file

        return load_inventory_file(inventory_file)
    from r4b_deploy.hardware.probe import probe_inventory

    return probe_inventory()


def _gib(n_bytes: int | None) -> str:
    from r4b_deploy.hardware.inventory import BYTES_PER_GIB

    return _DASH if n_bytes is None else f"{n_bytes / BYTES_PER_GIB:.1f}"


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("on" if value else "off")


def _print_inventory(inventory: Inventory) -> None:
    from rich.markup import escape
    from rich.table import Table

    from r4b_deploy.cli.output import console

    out = console()
    table = Table(title=f"GPUs ({inventory.source})", title_justify="left")
    for header, justify in (
        ("#", "right"),
        ("Name", "left"),
        ("Memory GiB", "right"),
        ("Free GiB", "right"),
        ("CC", "right"),
        ("MIG", "left"),
        ("NVLink", "right"),
        ("UUID", "left"),
    ):
        # Long names and UUIDs wrap instead of losing their ends to an ellipsis.
        table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for gpu in inventory.gpus:
        table.add_row(
            str(gpu.index),
            escape(gpu.name),
            _gib(gpu.memory_total_bytes),
            _gib(gpu.memory_free_bytes),
            gpu.compute_capability,
            _yes_no(gpu.mig_enabled),
            str(gpu.nvlink_active_links) if gpu.nvlink_active_links else _DASH,
            gpu.uuid or _DASH,
        )
    out.print(table)
    if inventory.driver_version or inventory.cuda_driver_version:
        out.print(
            f"Driver {inventory.driver_version or '?'} · supports CUDA up to {inventory.cuda_driver_version or '?'}"
        )
    if inventory.nvlink_pairs:
        out.print("NVLink pairs: " + " ".join(f"{a}-{b}" for a, b in inventory.nvlink_pairs))
    for note in inventory.notes:
        out.print(f"note: {note}", markup=False)


def _print_catalog(entries: tuple[GpuCatalogEntry, ...]) -> None:
    from rich.table import Table

    from r4b_deploy.cli.output import console

    table = Table(title="GPU catalog (use with --gpu NAME[:COUNT])", title_justify="left")
    for header, justify in (
        ("Name", "left"),
        ("Aliases", "left"),
        ("Memory MiB", "right"),
        ("CC", "right"),
        ("Architecture", "left"),
        ("NVLink", "left"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for e in entries:
        table.add_row(
            e.name,
            ", ".join(e.aliases) or _DASH,
            f"{e.memory_mib}" + ("*" if e.memory_basis == "nominal" else ""),
            e.compute_capability,
            e.architecture,
            "yes" if e.nvlink else "no",
        )
    out = console()
    out.print(table)
    out.print("* nominal size, not seen measured. NVML name patterns: --catalog --json", markup=False)
