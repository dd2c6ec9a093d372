"""The one runtime protocol (docker, process), its result models, its name type and its factory.

`up` drives a runtime through every step (build, start, wait, is_alive, log tail, save failure
log, stop); `down`, `status` and `logs` need only a folder. So the steps that act on a freshly
rendered deployment take the loaded `Deployment` (and the env file's values, read once by the
caller), and the steps that must work on whatever a folder left behind take the folder: a folder
whose manifest is damaged or gone may still have a container or process to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict

from r4b_deploy.errors import UsageError

if TYPE_CHECKING:
    from r4b_deploy.deployment import Deployment

RuntimeName = Literal["docker", "process"]
RUNTIME_NAMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
# What `down`/`status`/`logs` assume for a folder that was rendered but never launched by `up`
# (its compose file is what a user would run by hand).
DEFAULT_RUNTIME: RuntimeName = "docker"
RuntimeState = Literal["absent", "created", "starting", "running", "exited", "unhealthy"]


class Endpoint(BaseModel):
    """A running server. The API key itself is never here: `api_key_file` says where it lives."""

    model_config = ConfigDict(frozen=True)

    url: str  # "http://127.0.0.1:8000"
    served_model_name: str
    api_key_file: Path | None = None


class MemberStatus(BaseModel):
    """One container of a deployment with replicas: a vLLM replica or the router."""

    model_config = ConfigDict(frozen=True)

    service: str  # "replica-0", "router": what `logs --replica 0` / `--router` select
    container: str
    role: Literal["replica", "router"]
    state: RuntimeState
    healthy: bool | None = None
    url: str | None = None  # its loopback URL (a replica's own port; the router's is the API)
    gpus: list[str] = []  # the GPU device ids it holds; rehearsing, none
    cpus: str | None = None  # the CPU cores it is pinned to (a rehearsal replica)
    restarts: int = 0
    requests_served: int | None = None  # vllm:request_success_total since it started (replicas)
    detail: str = ""


class RuntimeStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    runtime: RuntimeName
    state: RuntimeState
    healthy: bool | None = None
    url: str | None = None
    started_at: datetime | None = None
    uptime_s: float | None = None
    gpu_memory_used_bytes: int | None = None
    detail: str = ""
    members: list[MemberStatus] = []  # with replicas: each replica, then the router; else empty


class StopResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    runtime: RuntimeName
    stopped: bool  # False: nothing was running (down is idempotent)
    removed: list[str] = []  # container names / pids / leftovers removed


class BuildLine(BaseModel):
    """One line of build output, with the step it belongs to (for a live progress display)."""

    model_config = ConfigDict(frozen=True)

    step: int | None = None
    steps_total: int | None = None
    text: str


class BuildResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    image_tag: str
    built: bool  # False: the content-addressed tag existed, nothing was sent to the daemon
    steps_total: int = 0
    steps_cached: int = 0
    steps_rebuilt: int = 0  # steps that ran (FROM lines excluded): 0 means every layer came from the cache
    duration_s: float = 0.0
    image_size_bytes: int | None = None


class Runtime(Protocol):
    """What `up`, `down`, `status` and `logs` need from a runtime. Both runtimes subclass it, so
    `wait` and `log_tail` (the same for both) are written once here.

    Folder arguments may be any path naming the folder: runtimes look it up by its identity
    (`r4b_deploy.deployment.folder_identity`).
    """

    name: RuntimeName
    builds_image: ClassVar[bool] = False  # whether `build` does anything (`up` shows a build stage then)
    runs_replicas: ClassVar[bool] = False  # whether it runs several engines behind vLLM's router

    def build(self, deployment: Deployment, *, force: bool = False) -> BuildResult | None:
        """Make what `start` needs (docker: the image); None when there is nothing to build."""
        ...

    def start(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint:
        """Start the server and return at once; `env` is the env file's values (secrets)."""
        ...

    def running_endpoint(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint | None:
        """The endpoint of a server already running this deployment (what `start` would reuse), or None."""
        ...

    def is_alive(self, folder: Path) -> bool:
        """Is the folder's server still there (for the health wait: a dead one fails it at once)?"""
        ...

    def logs(
        self, folder: Path, tail: int | None = None, follow: bool = False, service: str | None = None
    ) -> Iterator[str]:
        """The server's output. With replicas, `service` names one ("replica-0", "router"); None
        gives every container's lines, each prefixed with its service (not with `follow`)."""
        ...

    def save_failure_log(self, folder: Path) -> Path | None:
        """Keep the whole server log in the folder before `stop` removes it; where it is, or None."""
        ...

    def stop(self, folder: Path) -> StopResult:
        """Stop and remove whatever runs for the folder. Idempotent."""
        ...

    def status(self, folder: Path) -> RuntimeStatus: ...

    def wait(
        self, folder: Path, endpoint: Endpoint, timeout_s: float, on_tick: Callable[[float], None] | None = None
    ) -> float:
        """Wait for /health (seconds taken); LaunchError when the server dies or the time runs out."""
        from r4b_deploy.launch.health import wait_healthy

        return wait_healthy(endpoint.url, timeout_s, is_alive=lambda: self.is_alive(folder), on_tick=on_tick)

    def log_tail(self, folder: Path, lines: int) -> str:
        """The server's last `lines` lines, as one text."""
        return "\n".join(list(self.logs(folder, tail=lines))[-lines:])


def make_runtime(
    name: str,
    *,
    on_build_line: Callable[[BuildLine], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Runtime:
    """The runtime by name; imports only the one asked for (docker-py is heavy).

    `on_build_line` receives docker's build output, `on_progress` the process runtime's set-up notes.
    """
    if name == "docker":
        from r4b_deploy.launch.docker_runtime import DockerRuntime

        return DockerRuntime(on_build_line=on_build_line)
    if name == "process":
        from r4b_deploy.launch.process_runtime import ProcessRuntime

        return ProcessRuntime(on_progress=on_progress)
    raise UsageError(f"--runtime: {name!r} is not one of {', '.join(RUNTIME_NAMES)}")
