"""The docker runtime: build the deployment folder's image and run its container through docker-py.

Everything comes from the folder: `r4b-deploy.json`'s `container` (the same spec the compose
file was rendered from), the env file (secrets, passed as environment only) and the image tag
(content-addressed, so an existing tag means nothing to build). Containers carry the folder's
labels (`io.r4b-deploy.dir`), so `down`, `status` and `logs` find them again from the folder
alone, and `up` twice replaces or reuses the one container instead of adding a second.

Failures leave nothing behind: a container whose start fails is removed (docker-py's
`run(remove=True)` would leave a Created one), a failed build step's intermediate container is
removed by the daemon (`forcerm`), and each failure says what to do about it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from r4b_deploy.errors import EnvironmentProblem, LaunchError, R4BError
from r4b_deploy.launch.base import Endpoint, RuntimeStatus, StopResult
from r4b_deploy.launch.ports import port_in_use_error, port_problem

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from r4b_deploy.render.deployment import ContainerSpec, Deployment

# Our own labels, beside the renderer's io.r4b-deploy.dir / .project / .profile.
LABEL_CONFIG = "io.r4b-deploy.config"  # digest of the run configuration: same digest, same container
LABEL_RUNTIME = "io.r4b-deploy.runtime"

API_TIMEOUT_S = 120  # ordinary API calls (inspect, create, stop)
# The build's HTTP read timeout: the longest silent step measured was 80 s (copying a 2.45 GB venv
# between stages); a slow disk or a first `pip install vllm` on a GPU image can be far slower.
BUILD_TIMEOUT_S = 3600
STOP_TIMEOUT_S = 30  # SIGTERM grace before SIGKILL; with init=True vLLM stops in under a second
FAILURE_LOG_LINES = 50  # the log lines a launch error carries
BUILD_ERROR_LINES = 50  # a failed build step's output lines in the error
FAILURE_LOG_NAME = "container-failure.log"  # the full log of a container that failed to start
NANOSECONDS_PER_SECOND = 1_000_000_000

GPU_DRIVER_MARKERS = ("could not select device driver", "unknown runtime specified nvidia")
PORT_MARKERS = ("port is already allocated", "address already in use")
NVIDIA_TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit (the nvidia-container-toolkit apt package, from NVIDIA's "
    "repository), then run `sudo nvidia-ctk runtime configure --runtime=docker` and "
    "`sudo systemctl restart docker`; check with `r4b-deploy doctor`"
)
NO_ENGINE_FIX = (
    "start the Docker engine (`sudo systemctl start docker`), or set DOCKER_HOST to its socket, "
    "or run without Docker: --runtime process"
)


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


# ---------------------------------------------------------------- engine connection


def connect(timeout_s: float = API_TIMEOUT_S) -> docker.DockerClient:
    """A client to the engine DOCKER_HOST names (or the default socket); EnvironmentProblem if none answers."""
    import os

    import docker

    where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise EnvironmentProblem(
            f"cannot reach the Docker engine at {where}: {_first_line(str(exc))}", fix=NO_ENGINE_FIX
        ) from exc
    return client


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def api_explanation(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


# ---------------------------------------------------------------- pure helpers (unit-tested)


def config_digest(spec: ContainerSpec, env: dict[str, str]) -> str:
    """Digest of everything that shapes the container; a running container with the same digest is reused.

    The env values are hashed, not stored: the label then changes when the API key changes
    without carrying it.
    """
    payload = {
        "spec": spec.model_dump(mode="json"),
        "env": hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_kwargs(spec: ContainerSpec, env: dict[str, str], extra_labels: dict[str, str]) -> dict[str, Any]:
    """docker-py `containers.create` arguments for a ContainerSpec: what compose would do with the same spec."""
    import docker

    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "name": spec.name,
        "environment": dict(env),
        "ports": {f"{spec.container_port}/tcp": (spec.bind_address, spec.host_port)},
        "labels": {**spec.labels, **extra_labels},
        "init": spec.init,
        "detach": True,
        "restart_policy": {"Name": spec.restart_policy} if spec.restart_policy != "no" else None,
        "healthcheck": {
            "test": ["CMD", "curl", "-fsS", spec.health.url],
            "interval": spec.health.interval_s * NANOSECONDS_PER_SECOND,
            "timeout": spec.health.timeout_s * NANOSECONDS_PER_SECOND,
            "retries": spec.health.retries,
            "start_period": spec.health.start_period_s * NANOSECONDS_PER_SECOND,
        },
        "volumes": {v.source: {"bind": v.target, "mode": "ro" if v.read_only else "rw"} for v in spec.volumes},
        "ulimits": [docker.types.Ulimit(name=n, soft=v, hard=v) for n, v in spec.ulimits.items()],
    }
    if spec.ipc_mode == "host":
        kwargs["ipc_mode"] = "host"
    elif spec.shm_size_bytes is not None:
        kwargs["shm_size"] = spec.shm_size_bytes
    if spec.gpu_device_ids:
        kwargs["device_requests"] = [docker.types.DeviceRequest(device_ids=spec.gpu_device_ids, capabilities=[["gpu"]])]
    elif spec.gpu_count:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=spec.gpu_count, capabilities=[["gpu"]])]
    return {k: v for k, v in kwargs.items() if v is not None}


def classify_start_error(explanation: str, spec: ContainerSpec) -> R4BError:
    """One clear error for a container that Docker refused to start."""
    lowered = explanation.lower()
    if any(marker in lowered for marker in GPU_DRIVER_MARKERS):
        return EnvironmentProblem(
            f"Docker cannot give the container GPUs ({_first_line(explanation)}): "
            "the NVIDIA Container Toolkit is missing or not configured",
            fix=NVIDIA_TOOLKIT_FIX,
        )
    if any(marker in lowered for marker in PORT_MARKERS):
        return port_in_use_error(spec.bind_address, spec.host_port)
    return LaunchError(f"Docker could not start the container {spec.name}: {_first_line(explanation)}")


class _StepTracker:
    """Follows a classic build's stream: which step runs, whether it came from the cache, its output."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.steps_total: int | None = None
        self.instruction = ""
        self.step_lines: list[str] = []
        self.cached_steps: set[int] = set()
        self.run_steps: set[int] = set()  # non-FROM steps seen
        self.all_lines: list[str] = []
        self.running_container: str | None = None  # the current RUN step's intermediate container

    def feed(self, text: str) -> list[BuildLine]:
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            stripped = line.strip()
            if stripped.startswith("Step ") and " : " in stripped:
                head, _, instruction = stripped.partition(" : ")
                numbers = head.removeprefix("Step ").split("/")
                with contextlib.suppress(ValueError, IndexError):
                    self.step, self.steps_total = int(numbers[0]), int(numbers[1])
                self.instruction = instruction
                self.step_lines = []
                self.running_container = None
                if self.step is not None and not instruction.upper().startswith("FROM "):
                    self.run_steps.add(self.step)
            elif stripped == "---> Using cache" and self.step is not None:
                self.cached_steps.add(self.step)
            elif stripped.startswith("---> Running in "):
                self.running_container = stripped.removeprefix("---> Running in ").strip()
            self.step_lines.append(line)
            self.all_lines.append(line)
            out.append(BuildLine(step=self.step, steps_total=self.steps_total, text=line))
        return out


def parse_started_at(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds and `Z`; Python 3.10's fromisoformat takes neither."""
    if not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def status_from_inspect(attrs: dict[str, Any]) -> tuple[str, bool | None, str]:
    """(RuntimeStatus.state, healthy, detail) from `docker inspect`'s State."""
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    health = (state.get("Health") or {}).get("Status")
    restarts = attrs.get("RestartCount", 0)
    if status == "created":
        return "created", False, "created, never started"
    if status in ("exited", "dead"):
        return "exited", False, f"exited with code {state.get('ExitCode')}"
    if status == "restarting":
        return "starting", False, f"restarting after an exit (restart #{restarts})"
    if status == "paused":
        return "running", None, "paused"
    if health == "starting":
        return "starting", False, "starting (health check not passed yet)"
    if health == "unhealthy":
        return "unhealthy", False, "failing its health check"
    if health == "healthy":
        return "running", True, "healthy"
    return "running", None, status or "running"


# ---------------------------------------------------------------- the runtime


class DockerRuntime:
    """`Runtime` over the docker SDK. `on_build_line` receives build output (for a progress display)."""

    name: Literal["docker"] = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        on_build_line: Callable[[BuildLine], None] | None = None,
        build_timeout_s: float = BUILD_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self._client = client
        self.on_build_line = on_build_line
        self.build_timeout_s = build_timeout_s
        self.stop_timeout_s = stop_timeout_s

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect()
        return self._client

    # -- finding what belongs to a folder

    @staticmethod
    def _dir_key(deployment_dir: Path) -> str:
        import os

        return os.path.abspath(os.path.expanduser(str(deployment_dir)))

    def containers_for(self, deployment_dir: Path) -> list[Container]:
        """Every container of this folder, any state: by the folder label, and by the folder's name."""
        from r4b_deploy.render.deployment import LABEL_DIR, project_name_for

        key = self._dir_key(deployment_dir)
        found = {c.id: c for c in self.client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={key}"})}
        # Unlabelled leftovers under the folder's container name are ours too; a container of
        # that name labelled for another folder is not (start() refuses to touch it).
        name = project_name_for(Path(key))
        for c in self.client.containers.list(all=True, filters={"name": name}):
            if c.name == name and (c.labels or {}).get(LABEL_DIR, key) == key:  # the filter matches substrings
                found.setdefault(c.id, c)
        return list(found.values())

    def foreign_container(self, deployment: Deployment) -> Container | None:
        """A container holding this folder's container name but labelled for another folder."""
        import docker

        from r4b_deploy.render.deployment import LABEL_DIR

        try:
            container = self.client.containers.get(deployment.container.name)
        except docker.errors.NotFound:
            return None
        owner = (container.labels or {}).get(LABEL_DIR)
        return container if owner is not None and owner != str(deployment.dir) else None

    # -- build

    def image_exists(self, tag: str) -> bool:
        import docker

        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def build(
        self,
        deployment_dir: Path,
        on_line: Callable[[BuildLine], None] | None = None,
        *,
        force: bool = False,
    ) -> BuildResult:
        """Build the folder's image unless its content-addressed tag already exists."""
        from r4b_deploy.render.deployment import load_deployment

        deployment = load_deployment(deployment_dir)
        tag = deployment.image_tag
        if not force and self.image_exists(tag):
            return BuildResult(image_tag=tag, built=False, image_size_bytes=self._image_size(tag))
        return self._build(deployment, on_line or self.on_build_line)

    def _build(self, deployment: Deployment, on_line: Callable[[BuildLine], None] | None) -> BuildResult:
        import docker
        import requests

        tag = deployment.image_tag
        tracker = _StepTracker()
        started = time.monotonic()
        try:
            stream = self.client.api.build(
                path=str(deployment.dir),
                tag=tag,
                decode=True,
                rm=True,
                forcerm=True,  # a failed step's intermediate container is removed too
                pull=False,  # the base image is local or pulled by the FROM step; never re-pulled
                timeout=int(self.build_timeout_s),
            )
            for item in stream:
                if "stream" in item:
                    for line in tracker.feed(str(item["stream"])):
                        if on_line is not None:
                            on_line(line)
                elif "error" in item or "errorDetail" in item:
                    message = str(item.get("error") or (item.get("errorDetail") or {}).get("message", ""))
                    raise self._build_failed(tracker, message)
        except KeyboardInterrupt:
            # Closing the connection cancels the build; the running step's container is removed here
            # too rather than trusting the daemon to notice in time.
            self._reset_connection()
            self._remove_build_container(tracker.running_container)
            raise
        except requests.exceptions.ReadTimeout as exc:
            self._reset_connection()
            raise LaunchError(
                f"the image build printed nothing for {self.build_timeout_s:.0f} s (at step "
                f"{tracker.step}/{tracker.steps_total}: {tracker.instruction})",
                fix="check the Docker host's disk and network, then rerun; finished steps come from the cache",
                details="\n".join(tracker.step_lines[-BUILD_ERROR_LINES:]) or None,
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EnvironmentProblem(
                f"lost the connection to the Docker engine during the build: {_first_line(str(exc))}", fix=NO_ENGINE_FIX
            ) from exc
        except docker.errors.APIError as exc:
            raise LaunchError(
                f"the Docker engine refused the build: {_first_line(api_explanation(exc))}",
                fix=f"check {deployment.dir / 'Dockerfile'} (re-render with r4b-deploy render --force)",
            ) from exc
        if not self.image_exists(tag):
            raise LaunchError(
                f"the image build ended without producing {tag}",
                details="\n".join(tracker.all_lines[-BUILD_ERROR_LINES:]) or None,
                fix="rerun with --debug; the build output above says where it stopped",
            )
        cached = len(tracker.cached_steps)
        return BuildResult(
            image_tag=tag,
            built=True,
            steps_total=tracker.steps_total or 0,
            steps_cached=cached,
            steps_rebuilt=len(tracker.run_steps - tracker.cached_steps),
            duration_s=round(time.monotonic() - started, 1),
            image_size_bytes=self._image_size(tag),
        )

    @staticmethod
    def _build_failed(tracker: _StepTracker, message: str) -> LaunchError:
        where = f"step {tracker.step}/{tracker.steps_total}" if tracker.step is not None else "the start"
        instruction = tracker.instruction if len(tracker.instruction) <= 120 else tracker.instruction[:117] + "..."
        output = tracker.step_lines[1:] if tracker.step_lines else []  # the step header is in the message
        details = "\n".join([*output[-BUILD_ERROR_LINES:], message.rstrip()])
        headline = f"the image build failed at {where}: {instruction}" if instruction else "the image build failed"
        fix = (
            "the step's output is above; fix its cause (network, disk, a bad --base-image or --vllm-version) "
            "and rerun: finished steps come from the cache"
        )
        if instruction.upper().startswith("FROM "):
            base = instruction.split()[1]
            fix = f"make the base image available (`docker pull {base}`, or load it), or pass another --base-image"
        return LaunchError(headline, details=details, fix=fix)

    def _remove_build_container(self, container_id: str | None) -> None:
        import docker

        if container_id is None:
            return
        with contextlib.suppress(docker.errors.DockerException, EnvironmentProblem):
            self.client.containers.get(container_id).remove(force=True)

    def _image_size(self, tag: str) -> int | None:
        import docker

        try:
            return int(self.client.images.get(tag).attrs.get("Size") or 0) or None
        except docker.errors.DockerException:
            return None

    def _reset_connection(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- the Runtime protocol

    def start(self, deployment_dir: Path) -> Endpoint:
        """Run the folder's container (building the image first if it is missing); returns at once.

        A running container with the same configuration is reused; any other container of this
        folder (exited, created, or from an older render) is replaced: never two per folder.
        """
        import docker

        from r4b_deploy.render.deployment import LABEL_DIR, load_deployment, read_env_file

        deployment = load_deployment(deployment_dir)
        spec = deployment.container
        env = {k: v for k, v in read_env_file(deployment.dir).items() if v}
        digest = config_digest(spec, env)
        endpoint = Endpoint(
            url=deployment.url, served_model_name=deployment.served_model_name, api_key_file=deployment.env_file
        )
        foreign = self.foreign_container(deployment)
        if foreign is not None:
            owner = (foreign.labels or {}).get(LABEL_DIR)
            raise EnvironmentProblem(
                f"a container named {foreign.name} already exists and belongs to {owner}",
                fix=f"`r4b-deploy down --dir {owner}`, or `docker rm -f {foreign.name}` if that folder is gone",
            )
        for container in self.containers_for(deployment.dir):
            if container.status == "running" and (container.labels or {}).get(LABEL_CONFIG) == digest:
                return endpoint
            container.remove(force=True)

        if not self.image_exists(spec.image):
            self._build(deployment, self.on_build_line)
        problem = port_problem(spec.bind_address, spec.host_port)
        if problem is not None:
            raise problem
        for volume in spec.volumes:
            if not volume.read_only:
                # Made by us, not by the daemon: a folder the daemon creates belongs to root.
                Path(volume.source).mkdir(parents=True, exist_ok=True)

        kwargs = run_kwargs(spec, env, {LABEL_CONFIG: digest, LABEL_RUNTIME: self.name})
        container = None
        try:
            container = self.client.containers.create(**kwargs)
            container.start()
        except docker.errors.APIError as exc:
            self._remove_quietly(container, spec.name)
            raise classify_start_error(api_explanation(exc), spec) from exc
        except BaseException:
            self._remove_quietly(container, spec.name)
            raise
        return endpoint

    def _remove_quietly(self, container: Container | None, name: str) -> None:
        """Remove a container we just made (by object, or by name when create() was interrupted)."""
        import docker

        target: Any = container
        if target is None:
            with contextlib.suppress(docker.errors.DockerException):
                target = self.client.containers.get(name)
        if target is not None:
            with contextlib.suppress(docker.errors.NotFound):
                target.remove(force=True)

    def stop(self, deployment_dir: Path) -> StopResult:
        """Stop and remove every container of the folder, whatever its state. Idempotent."""
        import docker

        stopped = False
        removed: list[str] = []
        for container in self.containers_for(deployment_dir):
            try:
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=int(self.stop_timeout_s))
                    stopped = True
                container.remove(force=True)
                removed.append(container.name)
            except docker.errors.NotFound:
                continue  # removed meanwhile (auto-remove, a second `down`)
        return StopResult(runtime="docker", stopped=stopped, removed=removed)

    def status(self, deployment_dir: Path) -> RuntimeStatus:
        containers = self.containers_for(deployment_dir)
        if not containers:
            return RuntimeStatus(runtime="docker", state="absent", detail="no container for this folder")
        container = containers[0]
        attrs = container.attrs
        state, healthy, detail = status_from_inspect(attrs)
        url = self._url(deployment_dir, attrs)
        started_at = parse_started_at((attrs.get("State") or {}).get("StartedAt"))
        uptime_s = None
        if state in ("running", "starting", "unhealthy") and started_at is not None:
            uptime_s = round((datetime.now(timezone.utc) - started_at).total_seconds(), 1)
        docker_has_not_checked = state == "starting" and (attrs.get("State") or {}).get("Status") == "running"
        if url is not None and ((state == "running" and healthy is None) or docker_has_not_checked):
            # No health check in the image, or Docker's has not passed yet: ask /health from here.
            from r4b_deploy.launch.health import probe_health

            if probe_health(url):
                state, healthy, detail = "running", True, "healthy (answers /health)"
            elif healthy is None:
                healthy = False
        gpu_used = self._gpu_memory_used(attrs) if state in ("running", "starting", "unhealthy") else None
        if len(containers) > 1:
            detail += f"; {len(containers) - 1} more container(s) for this folder: run `r4b-deploy down`"
        return RuntimeStatus(
            runtime="docker",
            state=state,  # type: ignore[arg-type]
            healthy=healthy,
            url=url,
            started_at=started_at,
            uptime_s=uptime_s,
            gpu_memory_used_bytes=gpu_used,
            detail=f"{container.name}: {detail}",
        )

    @staticmethod
    def _url(deployment_dir: Path, attrs: dict[str, Any]) -> str | None:
        from r4b_deploy.render.deployment import load_deployment

        with contextlib.suppress(R4BError):
            return load_deployment(deployment_dir).url
        bindings = ((attrs.get("HostConfig") or {}).get("PortBindings") or {}).values()
        for binding in bindings:
            for b in binding or []:
                if b.get("HostPort"):
                    return f"http://127.0.0.1:{b['HostPort']}"
        return None

    @staticmethod
    def _gpu_memory_used(attrs: dict[str, Any]) -> int | None:
        """Memory in use on the GPUs the container requested (all GPUs for a count request), via NVML."""
        requests_ = (attrs.get("HostConfig") or {}).get("DeviceRequests") or []
        if not requests_:
            return None
        try:
            from r4b_deploy.hardware.probe import probe_inventory

            inventory = probe_inventory()
        except (R4BError, ImportError):
            return None
        wanted: set[int] | None = None
        ids = [i for r in requests_ for i in (r.get("DeviceIDs") or [])]
        if ids and all(i.isdigit() for i in ids):
            wanted = {int(i) for i in ids}
        used = [
            g.memory_total_bytes - g.memory_free_bytes
            for g in inventory.gpus
            if g.memory_free_bytes is not None and (wanted is None or g.index in wanted)
        ]
        return sum(used) if used else None

    def logs(self, deployment_dir: Path, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        """The container's output, line by line; after a failed start, the log `up` saved in the folder."""
        containers = self.containers_for(deployment_dir)
        if not containers:
            saved = Path(self._dir_key(deployment_dir)) / FAILURE_LOG_NAME
            if saved.is_file():
                lines = saved.read_text(errors="replace").splitlines()
                yield from lines[-tail:] if tail else lines
            return
        stream = containers[0].logs(stream=True, follow=follow, tail="all" if tail is None else tail)
        pending = b""
        try:
            for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode(errors="replace").rstrip("\r")
            if pending:
                yield pending.decode(errors="replace")
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    # -- what the pipeline uses beyond the protocol

    def is_alive(self, deployment_dir: Path) -> bool:
        """For wait_healthy: running, and not restarted since it started (a crash loop counts as dead)."""
        import docker

        containers = self.containers_for(deployment_dir)
        if not containers:
            return False
        try:
            containers[0].reload()
        except docker.errors.NotFound:
            return False
        attrs = containers[0].attrs
        return (attrs.get("State") or {}).get("Status") == "running" and not attrs.get("RestartCount")

    def log_tail(self, deployment_dir: Path, lines: int = FAILURE_LOG_LINES) -> str:
        return "\n".join(self.logs(deployment_dir, tail=lines))

    def save_failure_log(self, deployment_dir: Path) -> Path | None:
        """Keep the container's whole log in the folder before the container is removed."""
        lines = list(self.logs(deployment_dir))
        if not lines:
            return None
        path = Path(self._dir_key(deployment_dir)) / FAILURE_LOG_NAME
        path.write_text("\n".join(lines) + "\n")
        return path
