"""`r4b-deploy logs [-f] [--tail N]`: the deployment's server log, from its container or log file.

After an `up` whose server failed to start (its container is removed), prints the log `up`
saved in the folder instead.
"""

from __future__ import annotations

from pathlib import Path

import click

from r4b_deploy.cli.options import deployment_dir_option, runtime_override_option


@click.command("logs")
@deployment_dir_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the server stops (or Ctrl-C).")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N", help="Only the last N lines.")
@runtime_override_option
def command(deployment_dir: Path, follow: bool, tail: int | None, runtime: str | None) -> None:
    """Print (or follow) the deployment's server log."""
    from r4b_deploy.launch.base import make_runtime
    from r4b_deploy.launch.state import require_deployment_dir, resolve_runtime_name

    folder = require_deployment_dir(deployment_dir)
    printed = 0
    for line in make_runtime(resolve_runtime_name(folder, runtime)).logs(folder, tail=tail, follow=follow):
        click.echo(line)
        printed += 1
    if printed == 0:
        click.echo(f"no server log for {folder} (nothing was started, or it was removed by `down`)", err=True)
