"""`r4b-deploy status`: the deployment's state, health, URL, uptime and GPU memory in use.

Read from the folder and the runtime (container or process), never from memory; `--json` for
scripts. Exit 0 whatever the state: the state is the answer.
"""

from __future__ import annotations

from pathlib import Path

import click

from r4b_deploy.cli.options import deployment_dir_option, runtime_override_option

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
    status = runtime_obj.status(folder)
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
        ("health", {True: "healthy", False: "not healthy", None: "unknown"}[status.healthy]),
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


def _duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
