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

from r4b_deploy.deployment import (
    LABEL_DIR,
    LABEL_REPLICA,
    LABEL_ROLE,
    REPLICA_SERVICE,
    ROUTER_SERVICE,
    folder_identity,
    load_deployment,
    project_name_for,
)
from r4b_deploy.errors import EnvironmentProblem, R4BError, UsageError
from r4b_deploy.launch.base import (
    BuildLine,
    BuildResult,
    Endpoint,
    MemberStatus,
    Runtime,
    RuntimeState,
    RuntimeStatus,
    StopResult,
)
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

    from r4b_deploy.deployment import ContainerSpec, Deployment

STOP_TIMEOUT_S = 30  # SIGTERM grace before SIGKILL; with init=True vLLM stops in under a second
FAILURE_LOG_NAME = "container-failure.log"  # the full log of a container that failed to start
RUNNING_STATES = ("running", "starting", "unhealthy")
LAUNCH_TOKEN_BYTES = 8  # the launch label's token (docker_spec.LABEL_LAUNCH)


class DockerRuntime(Runtime):
    """`Runtime` over the docker SDK. `on_build_line` receives build output (for a progress display)."""

    name: Literal["docker"] = "docker"
    builds_image: ClassVar[bool] = True
    runs_replicas: ClassVar[bool] = True

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
        """A container holding one of this folder's container names but labelled for another folder."""
        import docker

        for spec in deployment.containers:
            try:
                container = self.client.containers.get(spec.name)
            except docker.errors.NotFound:
                continue
            owner = (container.labels or {}).get(LABEL_DIR)
            if owner is not None and owner != str(deployment.dir):
                return container
        return None

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
        """Run the folder's containers (building the image first if it is missing); returns at once.

        One engine, or the replicas and then the router. A running container with the same
        configuration is reused; any other container of this folder (exited, created, from an
        older render, or one the render no longer has) is replaced: never two per name.
        """
        import docker

        secrets = {k: v for k, v in env.items() if v}
        wanted = {spec.name: (spec, config_digest(spec, secrets)) for spec in deployment.containers}
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
        kept: set[str] = set()
        for container in self.containers_for(deployment.dir):
            spec_digest = wanted.get(container.name)
            same = spec_digest is not None and (container.labels or {}).get(LABEL_CONFIG) == spec_digest[1]
            if container.status == "running" and same and container.name not in kept:
                kept.add(container.name)
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        if len(kept) == len(wanted):
            return endpoint

        if not self.image_exists(deployment.image_tag):
            build_image(self.engine, deployment, self.on_build_line, self.build_timeout_s)
        to_start = [spec for spec in deployment.containers if spec.name not in kept]
        for spec in to_start:
            problem = port_problem(spec.bind_address, spec.host_port)
            if problem is not None:
                raise problem
            for volume in spec.volumes:
                if not volume.read_only:
                    # Made by us, not by the daemon: a folder the daemon creates belongs to root.
                    Path(volume.source).mkdir(parents=True, exist_ok=True)

        launch = secrets_module.token_hex(LAUNCH_TOKEN_BYTES)
        try:
            self._ensure_networks(deployment)
            for spec in to_start:
                self._create_and_start(spec, secrets, wanted[spec.name][1], launch)
        except BaseException:
            self._remove_quietly(None, launch)
            raise
        return endpoint

    def _create_and_start(self, spec: ContainerSpec, secrets: Mapping[str, str], digest: str, launch: str) -> None:
        import docker

        kwargs = run_kwargs(spec, secrets, {LABEL_CONFIG: digest, LABEL_RUNTIME: self.name, LABEL_LAUNCH: launch})
        container = None
        try:
            container = self.client.containers.create(**kwargs)
            container.start()
        except docker.errors.APIError as exc:
            self._remove_quietly(container, launch)
            raise classify_start_error(api_explanation(exc), spec) from exc

    def _ensure_networks(self, deployment: Deployment) -> None:
        """The deployment's own network (replicas + router): Docker's DNS resolves container names there."""
        if deployment.router is None:
            return  # one engine: Docker's default bridge, as compose's own project network would be
        existing = {n.name for n in self.client.networks.list(filters={"label": f"{LABEL_DIR}={deployment.dir}"})}
        for name in sorted({spec.network for spec in deployment.containers if spec.network}):
            if name not in existing:
                self.client.networks.create(name, driver="bridge", labels={LABEL_DIR: str(deployment.dir)})

    def running_endpoint(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint | None:
        """The endpoint when every container of the folder runs this very configuration (`start` reuses them)."""
        secrets = {k: v for k, v in env.items() if v}
        running = {
            c.name: (c.labels or {}).get(LABEL_CONFIG)
            for c in self.containers_for(deployment.dir)
            if c.status == "running"
        }
        if all(running.get(spec.name) == config_digest(spec, secrets) for spec in deployment.containers):
            return Endpoint(
                url=deployment.url,
                served_model_name=deployment.served_model_name,
                api_key_file=deployment.env_file,
            )
        return None

    def _remove_quietly(self, container: Container | None, launch: str) -> None:
        """Remove what this start made: the container by object, or (None: every container of this
        start, or create() interrupted before it returned one) by this start's own launch label;
        by ID either way, never by name."""
        import docker

        targets: list[Any] = [container] if container is not None else []
        if not targets:
            with contextlib.suppress(docker.errors.DockerException):
                targets = self.client.containers.list(all=True, filters={"label": f"{LABEL_LAUNCH}={launch}"})
        for target in targets:
            with contextlib.suppress(docker.errors.NotFound):
                target.remove(force=True)

    def stop(self, folder: Path) -> StopResult:
        """Stop and remove every container and network of the folder, whatever its state. Idempotent.
        The router goes first: it then sends no request to a replica that is stopping."""
        import docker

        stopped = False
        removed: list[str] = []
        containers = sorted(self.containers_for(folder), key=lambda c: (c.labels or {}).get(LABEL_ROLE) != "router")
        for container in containers:
            try:
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=int(self.stop_timeout_s))
                    stopped = True
                container.remove(force=True)
                removed.append(container.name)
            except docker.errors.NotFound:
                continue  # removed meanwhile (auto-remove, a second `down`)
        key = str(folder_identity(folder))
        for network in self.client.networks.list(filters={"label": f"{LABEL_DIR}={key}"}):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
                removed.append(f"network {network.name}")
        return StopResult(runtime=self.name, stopped=stopped, removed=removed)

    # -- watching it

    def is_alive(self, folder: Path) -> bool:
        """For the health wait: every container running, none restarted since it started (a crash
        loop counts as dead)."""
        import docker

        containers = self.containers_for(folder)
        if not containers:
            return False
        for container in containers:
            try:
                container.reload()
            except docker.errors.NotFound:
                return False
            attrs = container.attrs
            if (attrs.get("State") or {}).get("Status") != "running" or attrs.get("RestartCount"):
                return False
        return True

    def status(self, folder: Path) -> RuntimeStatus:
        containers = self.containers_for(folder)
        if not containers:
            return RuntimeStatus(runtime=self.name, state="absent", detail="no container for this folder")
        members = [self._member(c) for c in containers if (c.labels or {}).get(LABEL_ROLE)]
        members.sort(key=lambda m: (m.role == "router", m.service))
        # The API's container: the router with replicas, else the one engine.
        front = next((c for c in containers if (c.labels or {}).get(LABEL_ROLE) == "router"), containers[0])
        attrs = front.attrs
        state, healthy, detail = self._state(folder, attrs)
        url = self._url(folder, attrs)
        started_at = parse_started_at((attrs.get("State") or {}).get("StartedAt"))
        uptime_s = None
        if state in RUNNING_STATES and started_at is not None:
            uptime_s = round((datetime.now(timezone.utc) - started_at).total_seconds(), 1)
        gpu_used = self._gpu_memory_used(attrs) if state in RUNNING_STATES and not members else None
        if members:
            replicas = [m for m in members if m.role == "replica"]
            up = sum(1 for m in replicas if m.healthy)
            if healthy and up < len(replicas):
                state, healthy = "unhealthy", False
            detail += f"; {up} of {len(replicas)} replicas healthy"
        elif len(containers) > 1:
            detail += f"; {len(containers) - 1} more container(s) for this folder: run `r4b-deploy down`"
        return RuntimeStatus(
            runtime=self.name,
            state=state,
            healthy=healthy,
            url=url,
            started_at=started_at,
            uptime_s=uptime_s,
            gpu_memory_used_bytes=gpu_used,
            detail=f"{front.name}: {detail}",
            members=members,
        )

    def _state(
        self, folder: Path | None, attrs: dict[str, Any], url: str | None = None
    ) -> tuple[RuntimeState, bool | None, str]:
        """(state, healthy, detail) from `inspect`, asking /health from here when Docker has not decided."""
        state, healthy, detail = status_from_inspect(attrs)
        if url is None and folder is not None:
            url = self._url(folder, attrs)
        docker_has_not_checked = state == "starting" and (attrs.get("State") or {}).get("Status") == "running"
        if url is not None and ((state == "running" and healthy is None) or docker_has_not_checked):
            # No health check in the image, or Docker's has not passed yet: ask /health from here.
            from r4b_deploy.launch.health import probe_health

            if probe_health(url):
                state, healthy, detail = "running", True, "healthy (answers /health)"
            elif healthy is None:
                healthy = False
        return state, healthy, detail

    def _member(self, container: Container) -> MemberStatus:
        """One replica or the router, as `status` lists it."""
        labels = container.labels or {}
        attrs = container.attrs
        role = "router" if labels.get(LABEL_ROLE) == "router" else "replica"
        service = ROUTER_SERVICE if role == "router" else REPLICA_SERVICE.format(index=labels.get(LABEL_REPLICA, "?"))
        url = published_url(attrs)
        state, healthy, detail = self._state(None, attrs, url)
        host = attrs.get("HostConfig") or {}
        gpus = sorted(requested_gpu_indices(attrs) or set())
        return MemberStatus(
            service=service,
            container=container.name,
            role=role,
            state=state,
            healthy=healthy,
            url=url,
            gpus=[str(g) for g in gpus],
            cpus=host.get("CpusetCpus") or None,
            restarts=int(attrs.get("RestartCount") or 0),
            detail=detail,
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

    def logs(
        self, folder: Path, tail: int | None = None, follow: bool = False, service: str | None = None
    ) -> Iterator[str]:
        """The containers' output, line by line; after a failed start, the log `up` saved in the folder.

        With replicas, `service` picks one ("replica-0", "router"); None gives each container's
        lines in turn, prefixed with its service."""
        containers = self.containers_for(folder)
        if service is not None:
            name = f"{project_name_for(folder)}-{service}"
            chosen = [c for c in containers if c.name == name]
            if not chosen:
                known = ", ".join(sorted(c.name.removeprefix(project_name_for(folder) + "-") for c in containers))
                raise UsageError(f"this deployment has no {service}", fix=f"pick one of: {known or 'none running'}")
            yield from self._container_lines(chosen[0], tail, follow)
            return
        if not containers:
            saved = folder_identity(folder) / FAILURE_LOG_NAME
            if saved.is_file():
                lines = saved.read_text(errors="replace").splitlines()
                yield from lines[-tail:] if tail else lines
            return
        if len(containers) == 1:
            yield from self._container_lines(containers[0], tail, follow)
            return
        if follow:
            raise UsageError("--follow reads one container's log", fix="add --replica I or --router")
        prefix = project_name_for(folder) + "-"
        for container in sorted(containers, key=lambda c: ((c.labels or {}).get(LABEL_ROLE) == "router", c.name)):
            label = container.name.removeprefix(prefix)
            for line in self._container_lines(container, tail, False):
                yield f"[{label}] {line}"

    @staticmethod
    def _container_lines(container: Container, tail: int | None, follow: bool) -> Iterator[str]:
        stream = container.logs(stream=True, follow=follow, tail="all" if tail is None else tail)
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
