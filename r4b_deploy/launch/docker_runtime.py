"""The docker runtime: build the deployment folder's image and run its container through docker-py.

Everything comes from the loaded Deployment: its `container` (the same spec the compose file was
rendered from), the env file's values (secrets, passed as environment only) and the image tag
(content-addressed, so an existing tag means nothing to build). Containers carry the folder's
labels (`io.r4b-deploy.dir`, the folder's identity), so `down`, `status` and `logs` find them
again from the folder alone, and `up` twice replaces or reuses the one container instead of
adding a second.

Failures leave nothing behind: a container whose start fails is removed (docker-py's
`run(remove=True)` would leave a Created one), a failed build step's intermediate container is
removed by the daemon (`forcerm`), and each failure says what to do about it.
The pieces: `docker_client` (connection), `docker_build` (image), `docker_spec` (pure translation).
"""

from __future__ import annotations

import contextlib
import secrets as secrets_module
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from r4b_deploy.deployment import LABEL_DIR, folder_identity, load_deployment, project_name_for
from r4b_deploy.errors import EnvironmentProblem, R4BError
from r4b_deploy.launch.base import BuildLine, BuildResult, Endpoint, Runtime, RuntimeStatus, StopResult
from r4b_deploy.launch.docker_build import BUILD_TIMEOUT_S, build_image, image_exists, image_size_bytes
from r4b_deploy.launch.docker_client import EngineConnection, api_explanation
from r4b_deploy.launch.docker_spec import (
    LABEL_CONFIG,
    LABEL_LAUNCH,
    LABEL_RUNTIME,
    classify_start_error,
    config_digest,
    parse_started_at,
    published_url,
    requested_gpu_indices,
    run_kwargs,
    status_from_inspect,
)
from r4b_deploy.launch.ports import port_problem

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from r4b_deploy.deployment import Deployment

STOP_TIMEOUT_S = 30  # SIGTERM grace before SIGKILL; with init=True vLLM stops in under a second
FAILURE_LOG_NAME = "container-failure.log"  # the full log of a container that failed to start
RUNNING_STATES = ("running", "starting", "unhealthy")
LAUNCH_TOKEN_BYTES = 8  # the launch label's token (docker_spec.LABEL_LAUNCH)


class DockerRuntime(Runtime):
    """`Runtime` over the docker SDK. `on_build_line` receives build output (for a progress display)."""

    name: Literal["docker"] = "docker"
    builds_image: ClassVar[bool] = True

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        on_build_line: Callable[[BuildLine], None] | None = None,
        build_timeout_s: float = BUILD_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.engine = EngineConnection(client)
        self.on_build_line = on_build_line
        self.build_timeout_s = build_timeout_s
        self.stop_timeout_s = stop_timeout_s

    @property
    def client(self) -> docker.DockerClient:
        return self.engine.client

    # -- finding what belongs to a folder

    def containers_for(self, folder: Path) -> list[Container]:
        """Every container of this folder, any state: by the folder label, and by the folder's name."""
        key = str(folder_identity(folder))
        found = {c.id: c for c in self.client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={key}"})}
        # Unlabelled leftovers under the folder's container name are ours too; a container of
        # that name labelled for another folder is not (start() refuses to touch it).
        name = project_name_for(key)
        for c in self.client.containers.list(all=True, filters={"name": name}):
            if c.name == name and (c.labels or {}).get(LABEL_DIR, key) == key:  # the filter matches substrings
                found.setdefault(c.id, c)
        return list(found.values())

    def foreign_container(self, deployment: Deployment) -> Container | None:
        """A container holding this folder's container name but labelled for another folder."""
        import docker

        try:
            container = self.client.containers.get(deployment.container.name)
        except docker.errors.NotFound:
            return None
        owner = (container.labels or {}).get(LABEL_DIR)
        return container if owner is not None and owner != str(deployment.dir) else None

    # -- build

    def image_exists(self, tag: str) -> bool:
        return image_exists(self.client, tag)

    def build(
        self,
        deployment: Deployment,
        *,
        force: bool = False,
        on_line: Callable[[BuildLine], None] | None = None,
    ) -> BuildResult:
        """Build the folder's image unless its content-addressed tag already exists."""
        tag = deployment.image_tag
        if not force and self.image_exists(tag):
            return BuildResult(image_tag=tag, built=False, image_size_bytes=image_size_bytes(self.client, tag))
        return build_image(self.engine, deployment, on_line or self.on_build_line, self.build_timeout_s)

    # -- start and stop

    def start(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint:
        """Run the folder's container (building the image first if it is missing); returns at once.

        A running container with the same configuration is reused; any other container of this
        folder (exited, created, or from an older render) is replaced: never two per folder.
        """
        import docker

        spec = deployment.container
        secrets = {k: v for k, v in env.items() if v}
        digest = config_digest(spec, secrets)
        endpoint = Endpoint(
            url=deployment.url, served_model_name=deployment.served_model_name, api_key_file=deployment.env_file
        )
        # A new start makes the log of an earlier failed start stale.
        (deployment.dir / FAILURE_LOG_NAME).unlink(missing_ok=True)
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
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)

        if not self.image_exists(spec.image):
            build_image(self.engine, deployment, self.on_build_line, self.build_timeout_s)
        problem = port_problem(spec.bind_address, spec.host_port)
        if problem is not None:
            raise problem
        for volume in spec.volumes:
            if not volume.read_only:
                # Made by us, not by the daemon: a folder the daemon creates belongs to root.
                Path(volume.source).mkdir(parents=True, exist_ok=True)

        launch = secrets_module.token_hex(LAUNCH_TOKEN_BYTES)
        kwargs = run_kwargs(spec, secrets, {LABEL_CONFIG: digest, LABEL_RUNTIME: self.name, LABEL_LAUNCH: launch})
        container = None
        try:
            container = self.client.containers.create(**kwargs)
            container.start()
        except docker.errors.APIError as exc:
            self._remove_quietly(container, launch)
            raise classify_start_error(api_explanation(exc), spec) from exc
        except BaseException:
            self._remove_quietly(container, launch)
            raise
        return endpoint

    def running_endpoint(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint | None:
        """The endpoint when the folder's container runs this very configuration (`start` reuses it)."""
        digest = config_digest(deployment.container, {k: v for k, v in env.items() if v})
        for container in self.containers_for(deployment.dir):
            if container.status == "running" and (container.labels or {}).get(LABEL_CONFIG) == digest:
                return Endpoint(
                    url=deployment.url,
                    served_model_name=deployment.served_model_name,
                    api_key_file=deployment.env_file,
                )
        return None

    def _remove_quietly(self, container: Container | None, launch: str) -> None:
        """Remove the container this start made: by object, or (create() interrupted before it
        returned one) by this start's own launch label; by ID either way, never by name."""
        import docker

        targets: list[Any] = [container] if container is not None else []
        if not targets:
            with contextlib.suppress(docker.errors.DockerException):
                targets = self.client.containers.list(all=True, filters={"label": f"{LABEL_LAUNCH}={launch}"})
        for target in targets:
            with contextlib.suppress(docker.errors.NotFound):
                target.remove(force=True)

    def stop(self, folder: Path) -> StopResult:
        """Stop and remove every container of the folder, whatever its state. Idempotent."""
        import docker

        stopped = False
        removed: list[str] = []
        for container in self.containers_for(folder):
            try:
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=int(self.stop_timeout_s))
                    stopped = True
                container.remove(force=True)
                removed.append(container.name)
            except docker.errors.NotFound:
                continue  # removed meanwhile (auto-remove, a second `down`)
        return StopResult(runtime=self.name, stopped=stopped, removed=removed)

    # -- watching it

    def is_alive(self, folder: Path) -> bool:
        """For the health wait: running, and not restarted since it started (a crash loop counts as dead)."""
        import docker

        containers = self.containers_for(folder)
        if not containers:
            return False
        try:
            containers[0].reload()
        except docker.errors.NotFound:
            return False
        attrs = containers[0].attrs
        return (attrs.get("State") or {}).get("Status") == "running" and not attrs.get("RestartCount")

    def status(self, folder: Path) -> RuntimeStatus:
        containers = self.containers_for(folder)
        if not containers:
            return RuntimeStatus(runtime=self.name, state="absent", detail="no container for this folder")
        container = containers[0]
        attrs = container.attrs
        state, healthy, detail = status_from_inspect(attrs)
        url = self._url(folder, attrs)
        started_at = parse_started_at((attrs.get("State") or {}).get("StartedAt"))
        uptime_s = None
        if state in RUNNING_STATES and started_at is not None:
            uptime_s = round((datetime.now(timezone.utc) - started_at).total_seconds(), 1)
        docker_has_not_checked = state == "starting" and (attrs.get("State") or {}).get("Status") == "running"
        if url is not None and ((state == "running" and healthy is None) or docker_has_not_checked):
            # No health check in the image, or Docker's has not passed yet: ask /health from here.
            from r4b_deploy.launch.health import probe_health

            if probe_health(url):
                state, healthy, detail = "running", True, "healthy (answers /health)"
            elif healthy is None:
                healthy = False
        gpu_used = self._gpu_memory_used(attrs) if state in RUNNING_STATES else None
        if len(containers) > 1:
            detail += f"; {len(containers) - 1} more container(s) for this folder: run `r4b-deploy down`"
        return RuntimeStatus(
            runtime=self.name,
            state=state,
            healthy=healthy,
            url=url,
            started_at=started_at,
            uptime_s=uptime_s,
            gpu_memory_used_bytes=gpu_used,
            detail=f"{container.name}: {detail}",
        )

    @staticmethod
    def _url(folder: Path, attrs: dict[str, Any]) -> str | None:
        with contextlib.suppress(R4BError):
            return load_deployment(folder).url
        return published_url(attrs)

    @staticmethod
    def _gpu_memory_used(attrs: dict[str, Any]) -> int | None:
        """Memory in use on the GPUs the container requested (all GPUs for a count request), via NVML."""
        wanted = requested_gpu_indices(attrs)
        if wanted == set():
            return None
        try:
            from r4b_deploy.hardware.probe import probe_inventory

            inventory = probe_inventory()
        except (R4BError, ImportError):
            return None
        used = [
            g.memory_total_bytes - g.memory_free_bytes
            for g in inventory.gpus
            if g.memory_free_bytes is not None and (wanted is None or g.index in wanted)
        ]
        return sum(used) if used else None

    def logs(self, folder: Path, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        """The container's output, line by line; after a failed start, the log `up` saved in the folder."""
        containers = self.containers_for(folder)
        if not containers:
            saved = folder_identity(folder) / FAILURE_LOG_NAME
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

    def save_failure_log(self, folder: Path) -> Path | None:
        """Keep the container's whole log in the folder before the container is removed."""
        lines = list(self.logs(folder))
        if not lines:
            return None
        path = folder_identity(folder) / FAILURE_LOG_NAME
        path.write_text("\n".join(lines) + "\n")
        return path
