"""The toolkit's own Docker engine, for machines that have none (CI runners, containers, a fresh VM).

The work is done by `docker-engine.sh` beside this file, a bash script: it drives apt, dockerd,
debootstrap and iptables, which is what a shell does best, and CI calls the very same file
(`bash r4b_deploy/engine/docker-engine.sh ...` from `.ci/run`) before the toolkit is installed.
Installed, it ships inside the package and runs as `r4b-deploy engine ...`. Both use one data
root, `<cache>/docker-engine` (`r4b_deploy.paths.cache_dir()`), so neither rebuilds what the other
made. This module only locates the script, says how to call it, and words the hints that name it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SCRIPT_NAME = "docker-engine.sh"
SUBCOMMANDS = ("install", "start", "base-image", "env", "where", "status", "prune", "stop")
# Subcommands that change the machine (apt, dockerd, iptables, /run): root only.
ROOT_SUBCOMMANDS = frozenset({"install", "start", "base-image", "prune", "stop"})
# The helper's run folder and socket unless R4B_DOCKER_RUN / R4B_DOCKER_SOCK move them (the script's defaults).
DEFAULT_RUN_DIR = "/run/r4b-ci"
SOCKET_NAME = "docker.sock"
DEFAULT_SOCKET = f"{DEFAULT_RUN_DIR}/{SOCKET_NAME}"
SYSTEMD_MARKER = Path("/run/systemd/system")  # exists only while systemd is PID 1 (sd_booted())

START_COMMAND = "r4b-deploy engine install start base-image"
ENV_COMMAND = 'eval "$(r4b-deploy engine env)"'


def script_path() -> Path:
    return Path(__file__).resolve().parent / SCRIPT_NAME


def helper_command(subcommands: list[str] | tuple[str, ...]) -> list[str]:
    """The argv that runs the packaged helper (bash: a wheel may drop the executable bit)."""
    return ["bash", str(script_path()), *subcommands]


def helper_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the helper: the caller's, plus the base image the renderer writes into
    `FROM` (the pins are the one source of truth; the script's own lookup is for checkouts)."""
    from r4b_deploy.pins import gpu_pins

    env = dict(os.environ if environ is None else environ)
    env.setdefault("R4B_BASE_IMAGE", gpu_pins().base_image)
    return env


def helper_socket(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("R4B_DOCKER_SOCK") or os.path.join(env.get("R4B_DOCKER_RUN") or DEFAULT_RUN_DIR, SOCKET_NAME)


def systemd_runs(marker: Path | None = None) -> bool:
    """True where systemd is the init system: only then is `systemctl start docker` advice."""
    return (marker or SYSTEMD_MARKER).is_dir()


def no_engine_fix(environ: Mapping[str, str] | None = None, *, systemd: bool | None = None) -> str:
    """What to do when no Docker engine answers: the toolkit's own engine first (it works with no
    systemd, as in CI runners and containers); `systemctl` only where systemd runs."""
    env = os.environ if environ is None else environ
    socket = helper_socket(env)
    if not env.get("DOCKER_HOST") and os.path.exists(socket):
        return f"the toolkit's engine is running at {socket}: point the tools at it with {ENV_COMMAND}"
    ways = [f"start the toolkit's own engine (as root): {START_COMMAND}, then {ENV_COMMAND}"]
    if systemd if systemd is not None else systemd_runs():
        ways.append("start the system's engine: `sudo systemctl start docker`")
    ways.append("set DOCKER_HOST to a running engine's socket")
    ways.append("run without Docker: --runtime process")
    return "; or ".join(ways)


def restart_engine_hint(*, systemd: bool | None = None) -> str:
    """How to restart the engine after changing its runtimes (NVIDIA Container Toolkit)."""
    if systemd if systemd is not None else systemd_runs():
        return "`sudo systemctl restart docker`"
    return "restart dockerd (the toolkit's own engine: `r4b-deploy engine stop start`)"
