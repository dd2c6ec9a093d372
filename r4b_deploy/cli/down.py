"""`r4b-deploy down`: stop and remove the deployment's container or process. Idempotent.

Finds the deployment from the folder: the runtime recorded by `up` (r4b-state.json), then the
runtime's own traces (container labels, pidfile). Works after an `up` that stopped halfway, and
after the folder was deleted (containers by label, process servers by the user's registry).
Waits for an `up` of the same folder that is still running (bounded; see `launch/user_state`).
"""

from __future__ import annotations

from pathlib import Path

import click

from r4b_deploy.cli.options import deployment_dir_option, runtime_override_option


@click.command("down")
@deployment_dir_option
@runtime_override_option
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
def command(deployment_dir: Path, runtime: str | None, as_json: bool) -> None:
    """Stop and remove the deployment's container or process (idempotent)."""
    from r4b_deploy.deployment import folder_identity
    from r4b_deploy.launch.base import make_runtime
    from r4b_deploy.launch.state import resolve_runtime_name
    from r4b_deploy.launch.user_state import deployment_lock

    folder = folder_identity(deployment_dir)
    with deployment_lock(folder, doing="down", on_wait=lambda text: click.echo(text, err=True)):
        result = make_runtime(resolve_runtime_name(folder, runtime)).stop(folder)
    if as_json:
        from r4b_deploy.cli.output import print_json

        print_json(result)
        return
    if result.removed:
        verb = "stopped and removed" if result.stopped else "removed"
        click.echo(f"{verb} {', '.join(result.removed)} ({result.runtime}, {folder})")
    else:
        click.echo(f"nothing was running for {folder} ({result.runtime})")
