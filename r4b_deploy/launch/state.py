"""The state file: which runtime launched a deployment folder, so `down`, `status` and `logs` pick
the right one later from the folder alone (never from memory).

`up` writes it before it starts anything: a half-finished `up` (crash, Ctrl-C) still leaves a
record that `down` can act on. It holds no secret and nothing a runtime cannot rediscover
(the docker runtime finds its containers by label; this only says where to look).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from r4b_deploy.errors import ConfigError, UsageError
from r4b_deploy.launch.base import Runtime

STATE_FILE_NAME = "r4b-state.json"
RuntimeName = Literal["docker", "process"]
RUNTIME_NAMES: tuple[RuntimeName, ...] = ("docker", "process")
# What `down`/`status`/`logs` assume for a folder that was rendered but never launched by `up`
# (its compose file is what a user would run by hand).
DEFAULT_RUNTIME: RuntimeName = "docker"


class LaunchState(BaseModel):
    """One small record per deployment folder, rewritten at each `up`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = 1
    runtime: RuntimeName
    launched_at: datetime
    url: str | None = None
    image_tag: str | None = None  # docker only
    container_name: str | None = None  # docker only


def state_path(deployment_dir: Path) -> Path:
    return Path(deployment_dir) / STATE_FILE_NAME


def write_state(
    deployment_dir: Path,
    runtime: RuntimeName,
    *,
    url: str | None = None,
    image_tag: str | None = None,
    container_name: str | None = None,
) -> LaunchState:
    """Record the runtime atomically (a reader never sees half a file)."""
    state = LaunchState(
        runtime=runtime,
        launched_at=datetime.now(timezone.utc),
        url=url,
        image_tag=image_tag,
        container_name=container_name,
    )
    path = state_path(deployment_dir)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return state


def read_state(deployment_dir: Path) -> LaunchState | None:
    """The folder's launch record, or None if nothing was ever launched from it."""
    path = state_path(deployment_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the state file: {exc}") from exc
    try:
        return LaunchState.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ConfigError(
            f"{path}: the state file is damaged",
            fix=f"delete {path} and pass --runtime docker|process to say which runtime launched it",
        ) from exc


def resolve_runtime_name(deployment_dir: Path, override: str | None = None) -> RuntimeName:
    """The runtime to use for a folder: what the user says, else what `up` recorded, else docker."""
    if override is not None:
        if override not in RUNTIME_NAMES:
            raise UsageError(f"--runtime: {override!r} is not one of {', '.join(RUNTIME_NAMES)}")
        return override  # type: ignore[return-value]
    state = read_state(deployment_dir)
    return state.runtime if state is not None else DEFAULT_RUNTIME


def make_runtime(name: RuntimeName) -> Runtime:
    """A runtime object by name; imports only the one asked for (docker-py is heavy)."""
    if name == "docker":
        from r4b_deploy.launch.docker_runtime import DockerRuntime

        return DockerRuntime()
    if name == "process":
        from r4b_deploy.launch.process_runtime import ProcessRuntime

        return ProcessRuntime()
    raise UsageError(f"--runtime: {name!r} is not one of {', '.join(RUNTIME_NAMES)}")


def require_deployment_dir(deployment_dir: Path) -> Path:
    """The folder `down`/`status`/`logs` act on must exist; say how to make one if not."""
    path = Path(deployment_dir).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(
            f"no deployment folder at {path}",
            fix="pass --dir with the folder `r4b-deploy up`/`render` wrote (default ./deploy)",
        )
    return path
