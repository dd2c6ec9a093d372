"""`r4b-deploy engine install|start|base-image|env|where|status|prune|stop`: the toolkit's own Docker
engine for a machine with none (the same helper CI runs, with the same data root).

A thin adapter: it runs the packaged `docker-engine.sh` with the terminal attached, so its
progress lines and `env`'s export line reach the user as the script writes them.
"""

from __future__ import annotations

import os
import subprocess

import click

from r4b_deploy.engine import SUBCOMMANDS


@click.command("engine")
@click.argument("subcommands", nargs=-1, required=True, type=click.Choice(SUBCOMMANDS))
def command(subcommands: tuple[str, ...]) -> None:
    """Install, start, stop or inspect the toolkit's own Docker engine; make the local base image.

    \b
    r4b-deploy engine install start base-image   # as root: apt packages, dockerd, the stand-in base
    eval "$(r4b-deploy engine env)"              # DOCKER_HOST for docker, compose and r4b-deploy
    r4b-deploy engine status                     # is it up; its images
    r4b-deploy engine stop                       # containers removed, images and build cache kept
    """
    from r4b_deploy.engine import ROOT_SUBCOMMANDS, helper_command, helper_environment
    from r4b_deploy.errors import EnvironmentProblem

    needs_root = [name for name in subcommands if name in ROOT_SUBCOMMANDS]
    if needs_root and os.geteuid() != 0:
        raise EnvironmentProblem(
            f"`engine {' '.join(needs_root)}` changes the machine (apt, dockerd, iptables) and needs root",
            fix=f"sudo r4b-deploy engine {' '.join(subcommands)}",
        )
    result = subprocess.run(helper_command(subcommands), env=helper_environment(), stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise EnvironmentProblem(
            f"`r4b-deploy engine {' '.join(subcommands)}` failed (exit {result.returncode})",
            fix="read the helper's lines above; `r4b-deploy engine where` names dockerd's log",
        )
