"""`r4b-deploy logs [-f] [--tail N] [--replica I | --router]`: the deployment's server log, from
its container(s) or log file.

With replicas behind vLLM's router, `--replica I` or `--router` shows one container's log; without
either, every container's lines, each prefixed with its service. After an `up` whose server
failed to start (its container is removed), prints the log `up` saved in the folder instead.
"""

from __future__ import annotations

from pathlib import Path

import click

from r4b_deploy.cli.options import deployment_dir_option, runtime_override_option


@click.command("logs")
@deployment_dir_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the server stops (or Ctrl-C).")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N", help="Only the last N lines.")
@click.option(
    "--replica",
    type=click.IntRange(min=0),
    default=None,
    metavar="I",
    help="With replicas: only replica I's log (from 0).",
)
@click.option("--router", is_flag=True, help="With replicas: only the router's log.")
@runtime_override_option
def command(
    deployment_dir: Path, follow: bool, tail: int | None, replica: int | None, router: bool, runtime: str | None
) -> None:
    """Print (or follow) the deployment's server log."""
    from r4b_deploy.launch.base import make_runtime
    from r4b_deploy.launch.state import require_deployment_dir, resolve_runtime_name

    folder = require_deployment_dir(deployment_dir)
    service = _service(folder, replica, router)
    printed = 0
    runtime_obj = make_runtime(resolve_runtime_name(folder, runtime))
    for line in runtime_obj.logs(folder, tail=tail, follow=follow, service=service):
        click.echo(line)
        printed += 1
    if printed == 0:
        click.echo(f"no server log for {folder} (nothing was started, or it was removed by `down`)", err=True)


def _service(folder: Path, replica: int | None, router: bool) -> str | None:
    """The container `--replica I` / `--router` name ("replica-0", "router"), checked against the
    folder's manifest; None when neither is given (every container's log)."""
    from r4b_deploy.deployment import REPLICA_SERVICE, ROUTER_SERVICE, read_manifest
    from r4b_deploy.errors import UsageError

    if replica is None and not router:
        return None
    if replica is not None and router:
        raise UsageError("--replica and --router each name one log: give one of them", fix="drop one of the two")
    option = "--router" if router else f"--replica {replica}"
    deployment = read_manifest(folder)
    if deployment.router is None:
        raise UsageError(
            f"{option}: {folder} runs one vLLM engine, with no replicas or router",
            fix=f"drop {option.split()[0]}: `r4b-deploy logs --dir {folder}` shows its log",
        )
    if router:
        return ROUTER_SERVICE
    count = len(deployment.replicas)
    if replica is not None and replica >= count:
        raise UsageError(
            f"--replica {replica}: {folder} runs {count} replicas, numbered 0 to {count - 1}",
            fix=f"choose --replica 0 to {count - 1}",
        )
    return REPLICA_SERVICE.format(index=replica)
