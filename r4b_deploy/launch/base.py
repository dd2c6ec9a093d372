"""What every runtime (docker, process) returns, so `up`, `down`, `status` and `logs` share one shape."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict


class Endpoint(BaseModel):
    """A running server. The API key itself is never here: `api_key_file` says where it lives."""

    model_config = ConfigDict(frozen=True)

    url: str  # "http://127.0.0.1:8000"
    served_model_name: str
    api_key_file: Path | None = None


class RuntimeStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    runtime: Literal["docker", "process"]
    state: Literal["absent", "created", "starting", "running", "exited", "unhealthy"]
    healthy: bool | None = None
    url: str | None = None
    started_at: datetime | None = None
    uptime_s: float | None = None
    gpu_memory_used_bytes: int | None = None
    detail: str = ""


class StopResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    runtime: Literal["docker", "process"]
    stopped: bool  # False: nothing was running (down is idempotent)
    removed: list[str] = []  # container names / pids / leftovers removed


class Runtime(Protocol):
    """Both runtimes take the deployment folder: it is the contract between render and launch."""

    name: Literal["docker", "process"]

    def start(self, deployment_dir: Path) -> Endpoint: ...

    def stop(self, deployment_dir: Path) -> StopResult: ...

    def status(self, deployment_dir: Path) -> RuntimeStatus: ...

    def logs(self, deployment_dir: Path, tail: int | None = None, follow: bool = False) -> Iterator[str]: ...
