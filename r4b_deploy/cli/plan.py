"""`r4b-deploy plan`: pick a profile and print the vLLM settings and the memory arithmetic.

The table and `--json` print the same Plan object. The --json path imports no rich.
"""

from __future__ import annotations

import shlex
from typing import Any

import click

from r4b_deploy.cli.options import plan_request_from, planning_options
from r4b_deploy.planning.plan import Plan

_BYTES_PER_GIB = 1024**3
_BYTES_PER_GB = 1000**3


@click.command("plan")
@planning_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
def command(as_json: bool, **kwargs: Any) -> None:
    """Pick a profile and work out the vLLM settings from the memory arithmetic."""
    from r4b_deploy.planning.planner import make_plan

    plan = make_plan(plan_request_from(kwargs))
    if as_json:
        from r4b_deploy.cli.output import print_json

        print_json(plan_json(plan))
        return
    print_plan(plan)


def container_args(plan: Plan) -> list[str]:
    """The arguments after `vllm serve` as the rendered container runs them with default options."""
    from r4b_deploy.launch.args import CONTAINER_HOST, CONTAINER_PORT, vllm_serve_args

    v = plan.vllm
    return vllm_serve_args(
        v, model=v.model, served_model_name=v.served_model_name, host=CONTAINER_HOST, port=CONTAINER_PORT
    )


def plan_json(plan: Plan) -> dict[str, Any]:
    """The Plan as `--json` prints it: its own fields, and `vllm.args`, the exact argument list."""
    data = plan.model_dump(mode="json")
    data["vllm"] = {"args": container_args(plan), **data["vllm"]}
    return data


def _fit_label(fits: bool, chosen: bool) -> str:
    """yes: the documented minimum is met and the arithmetic holds the tier's settings."""
    if fits:
        return "[green]yes[/green]"
    return "[yellow]reduced[/yellow]" if chosen else "[red]no[/red]"


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / _BYTES_PER_GIB:.2f}"


def serve_command_block(args: list[str], indent: str = "  ") -> str:
    """`vllm serve ARGS` as a shell-continued block, one option a line: it reads at any width and
    pastes as one command (shell-quoted, so the JSON values survive)."""
    lines: list[list[str]] = [["vllm", "serve"]]
    for arg in args:
        if arg.startswith("--"):
            lines.append([])
        lines[-1].append(shlex.quote(arg))
    return " \\\n".join(indent + ("" if i == 0 else "  ") + " ".join(line) for i, line in enumerate(lines))


def print_plan(plan: Plan) -> None:
    """The human summary: GPUs, tiers, the command line, memory, capacity, reasons and warnings."""
    from rich.markup import escape
    from rich.table import Table

    from r4b_deploy.cli.output import console

    out = console()
    v, m = plan.vllm, plan.memory
    name = escape(plan.model_name or "R-4B")  # a model folder's name is the user's text
    title = f"{name} plan: profile [bold]{plan.profile}[/bold]" + (" (reduced)" if plan.reduced else "")
    out.print(title)
    if plan.replica_count > 1:
        groups = " ".join(",".join(map(str, group)) for group in plan.replica_gpu_indices())
        each = "its own CPU core" if plan.rehearsal else f"its own GPUs: {groups}"
        out.print(f"[bold]{plan.replica_count} replicas × {plan.profile}[/bold] behind vLLM's router (each on {each})")
    if plan.profile_description:
        out.print(f"  {plan.profile_description}", markup=False)

    if plan.gpus:
        gpus = Table(title=f"GPUs ({plan.inventory_source})", title_justify="left")
        for column in ("#", "name", "memory", "compute", "free", "used"):
            gpus.add_column(column, justify="right" if column in ("#", "memory", "free") else "left")
        for g in plan.gpus:
            free = f"{g.memory_free_bytes / _BYTES_PER_GIB:.1f} GiB" if g.memory_free_bytes is not None else "-"
            mig = " (MIG)" if g.mig_enabled else ""
            gpus.add_row(
                str(g.index),
                g.name + mig,
                f"{g.memory_total_bytes / _BYTES_PER_GB:.1f} GB",
                g.compute_capability,
                free,
                "yes" if g.index in plan.gpu_indices else "",
            )
        out.print(gpus)
    else:
        out.print("GPUs: none (CPU rehearsal)")

    if plan.tiers:
        # Each tier's full verdict is in "Why" below; the table stays narrow enough for 80 columns.
        tiers = Table(title="Profiles", title_justify="left")
        for column in ("", "profile", "GPUs × min GB", "fits", "context", "KV tokens"):
            tiers.add_column(column)
        for t in plan.tiers:
            tiers.add_row(
                "▶" if t.chosen else "",
                t.name,
                f"{t.gpu_count} × {t.min_memory_gb_per_gpu:g}",
                _fit_label(t.meets_minimum and t.fits, t.chosen),
                f"{t.max_model_len:,}",
                f"{t.kv_tokens:,}" if t.kv_tokens else "-",
            )
        out.print(tiers)

    out.print("[bold]vLLM command[/bold]")
    # soft_wrap: rich must not break the lines itself (a pasted break would end the command).
    out.print(serve_command_block(container_args(plan)), markup=False, highlight=False, soft_wrap=True)

    if not plan.rehearsal:
        table = Table(title="Memory per GPU (GiB)", title_justify="left")
        table.add_column("part")
        table.add_column("GiB", justify="right")
        rows = (
            ("GPU total (CUDA)", m.gpu_memory_bytes),
            (f"budget (× {v.gpu_memory_utilization:g})", m.budget_bytes),
            ("− weights", m.weights_bytes),
            ("− activations", m.activation_bytes),
            ("− vision encoder", m.vision_encoder_bytes),
            ("− non-torch", m.non_torch_bytes),
            ("− CUDA graphs", m.cuda_graph_bytes),
            ("= KV cache", m.kv_cache_bytes),
        )
        for label, value in rows:
            table.add_row(label, _gib(value))
        out.print(table)
        each = " per replica" if plan.replica_count > 1 else ""
        out.print(
            f"[bold]Capacity[/bold]{each}: {m.kv_tokens:,} KV tokens ({m.kv_bytes_per_token:,} B/token), "
            f"max concurrency {m.max_concurrency:g} full {v.max_model_len:,}-token sequences; "
            f"max_num_seqs {v.max_num_seqs}, tensor parallel {v.tensor_parallel_size}"
        )
        if plan.replica_count > 1:
            n = plan.replica_count
            out.print(
                f"[bold]All {n} replicas[/bold]: {n * m.kv_tokens:,} KV tokens, "
                f"{round(n * m.max_concurrency, 2):g} full sequences, {n * v.max_num_seqs:,} batch slots"
            )

    for heading, lines, style in (
        ("Why", plan.reasons, ""),
        ("More memory would buy", plan.upgrades, ""),
        ("Warnings", plan.warnings, "yellow"),
    ):
        if not lines:
            continue
        out.print(f"[bold]{heading}[/bold]")
        for line in lines:
            out.print(f"  • {line}", style=style or None, markup=False)
