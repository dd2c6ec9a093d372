"""The state file: which runtime launched a deployment folder, so `down`, `status` and `logs` pick
the right one later from the folder alone (never from memory).

`up` writes it before it starts anything: a half-finished `up` (crash, Ctrl-C) still leaves a
record that `down` can act on. It holds no secret and nothing a runtime cannot rediscover
(the docker runtime finds its containers by label; this only says where to look).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from r4b_deploy.atomic import write_text_atomic
from r4b_deploy.deployment import folder_identity
from r4b_deploy.errors import ConfigError, UsageError
from r4b_deploy.launch.base import DEFAULT_RUNTIME, RUNTIME_NAMES, RuntimeName

STATE_FILE_NAME = "r4b-state.json"
STATE_FILE_MODE = 0o644  # no secret in it (see above)


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
    return folder_identity(deployment_dir) / STATE_FILE_NAME


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
    write_text_atomic(state_path(deployment_dir), state.model_dump_json(indent=2) + "\n", mode=STATE_FILE_MODE)
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
    """The runtime to use for a folder: what the user says, else what `up` recorded (for a deleted
    folder: the process runtime if its registry knows the folder), else docker."""
    if override is not None:
        for name in RUNTIME_NAMES:
            if override == name:
                return name
        raise UsageError(f"--runtime: {override!r} is not one of {', '.join(RUNTIME_NAMES)}")
    if not folder_identity(deployment_dir).is_dir():
        # Deleted by hand: a process server is in the user's registry; containers carry a label.
        from r4b_deploy.launch.server_registry import registered

        return "process" if registered(deployment_dir) is not None else DEFAULT_RUNTIME
    state = read_state(deployment_dir)
    return state.runtime if state is not None else DEFAULT_RUNTIME


def require_deployment_dir(deployment_dir: Path) -> Path:
    """The folder `down`/`status`/`logs` act on must exist; say how to make one if not."""
    path = folder_identity(deployment_dir)
    if not path.is_dir():
        raise UsageError(
            f"no deployment folder at {path}",
            fix="pass --dir with the folder `r4b-deploy up`/`render` wrote (default ./deploy)",
        )
    return path
