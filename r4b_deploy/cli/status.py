"""`r4b-deploy status`: the deployment's state, health, URL, uptime and GPU memory in use; with
replicas behind vLLM's router, one row per replica and the router (state, health, GPUs or CPU
cores, restarts, requests served from each replica's own /metrics).

Read from the folder and the runtime (container or process), never from memory; `--json` for
scripts. Exit 0 whatever the state: the state is the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from r4b_deploy.cli.options import deployment_dir_option, runtime_override_option

if TYPE_CHECKING:
    from r4b_deploy.launch.base import MemberStatus, RuntimeStatus

_STATE_STYLE = {"running": "green", "starting": "yellow", "created": "yellow", "unhealthy": "red", "exited": "red"}


@click.command("status")
@deployment_dir_option
@runtime_override_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def command(deployment_dir: Path, runtime: str | None, as_json: bool) -> None:
    """Show the deployment's state, health, URL and uptime."""
    from r4b_deploy.launch.base import make_runtime
    from r4b_deploy.launch.startup_log import check_running
    from r4b_deploy.launch.state import require_deployment_dir, resolve_runtime_name

    folder = require_deployment_dir(deployment_dir)
    runtime_obj = make_runtime(resolve_runtime_name(folder, runtime))
    status = _with_requests_served(runtime_obj.status(folder))
    # The plan beside vLLM's own start-up figures, read from the server's log.
    check = None if status.state == "absent" else check_running(runtime_obj, folder)
    if as_json:
        from r4b_deploy.cli.output import print_json

        print_json({**status.model_dump(mode="json"), "plan_check": check.model_dump(mode="json") if check else None})
        return
    from rich.markup import escape

    from r4b_deploy.cli.output import console

    out = console()
    style = _STATE_STYLE.get(status.state, "dim")
    out.print(f"[{style}]{status.state}[/{style}] ({status.runtime}) {escape(str(folder))}", soft_wrap=True)
    rows = [
        ("health", _HEALTH_TEXT[status.healthy]),
        ("url", status.url or "-"),
        ("uptime", _duration(status.uptime_s) if status.uptime_s is not None else "-"),
        ("started", status.started_at.isoformat(timespec="seconds") if status.started_at else "-"),
    ]
    if status.gpu_memory_used_bytes is not None:
        rows.append(("GPU memory used", f"{status.gpu_memory_used_bytes / 1024**3:.1f} GiB"))
    if status.detail:
        rows.append(("detail", status.detail))
    for key, value in rows:
        out.print(f"  {key:<16} {value}", markup=False, soft_wrap=True)
    if check is not None:
        for line in check.summary_lines():
            out.print(f"  {line}", markup=False, soft_wrap=True)
        for warning in check.warnings:
            out.print(f"  [yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if status.members:
        out.print(_members_table(status.members))
        for member in status.members:  # why one is down or restarting, below the table (it would not fit)
            if member.detail and not (member.healthy and member.detail.startswith("healthy")):  # the table says it
                out.print(f"  {member.service}: {member.detail}", markup=False, soft_wrap=True)


_HEALTH_TEXT = {True: "healthy", False: "not healthy", None: "unknown"}


def _with_requests_served(status: RuntimeStatus) -> RuntimeStatus:
    """The status with each running replica's request count read from its /metrics, where the
    runtime left it unknown; one that cannot be read stays unknown (status never fails on it)."""
    wanted = [m for m in status.members if _needs_count(m)]
    if not wanted:
        return status
    from r4b_deploy.client.metrics import requests_served_each

    counts = dict(zip((m.service for m in wanted), requests_served_each([str(m.url) for m in wanted]), strict=True))
    members = [
        m.model_copy(update={"requests_served": counts[m.service]}) if m.service in counts else m
        for m in status.members
    ]
    return status.model_copy(update={"members": members})


def _needs_count(member: MemberStatus) -> bool:
    return (
        member.role == "replica"
        and member.requests_served is None
        and member.url is not None
        and member.state in ("running", "unhealthy", "starting")
    )


def _members_table(members: list[MemberStatus]):  # -> rich.table.Table
    """One row per replica and the router, in 80 columns: the URL and container name are in --json."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("service", "state", "health", "GPUs / CPUs", "restarts", "requests"):
        table.add_column(column, justify="right" if column in ("restarts", "requests") else "left")
    for member in members:
        style = _STATE_STYLE.get(member.state, "dim")
        placement = ",".join(member.gpus) or (f"cpu {member.cpus}" if member.cpus else "-")
        served = "-" if member.role == "router" else _count(member.requests_served)
        table.add_row(
            escape(member.service),
            f"[{style}]{member.state}[/{style}]",
            _HEALTH_TEXT[member.healthy],
            placement,
            str(member.restarts),
            served,
        )
    return table


def _count(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def _duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
