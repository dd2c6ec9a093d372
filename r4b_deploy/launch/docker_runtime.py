"""The docker runtime: build the deployment folder's image and run its containers through docker-py.

Everything comes from the loaded Deployment: its `containers` (one engine, or the replicas and then
vLLM's router, started from the same image with its own entrypoint; the same specs the compose
file was rendered from), the env file's values (secrets, passed to the replicas only, as
environment) and the image tag (content-addressed, so an existing tag means nothing to build).
With a router, every container joins the deployment's own network, named after the project, so
the router reaches the replicas by container name. Containers carry the folder's labels
(`io.r4b-deploy.dir`, the folder's identity; role and replica index), so `down`, `status` and
`logs` find them again from the folder alone, and `up` twice replaces or reuses each container
instead of adding a second.

Failures leave nothing behind: a container whose start fails is removed (docker-py's
`run(remove=True)` would leave a Created one), a failed build step's intermediate container is
removed by the daemon (`forcerm`), and each failure says what to do about it.
The pieces: `docker_client` (connection), `docker_build` (image), `docker_spec` (pure translation),
`docker_watch` (the read-only side: finding the containers, `is_alive`, `status`, `logs`).
"""

from __future__ import annotations

import contextlib
import secrets as secrets_module
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from r4b_deploy.deployment import LABEL_DIR, LABEL_ROLE, folder_identity
from r4b_deploy.errors import EnvironmentProblem
from r4b_deploy.launch.base import BuildLine, BuildResult, Endpoint, Runtime, StopResult
from r4b_deploy.launch.docker_build import BUILD_TIMEOUT_S, build_image, image_exists, image_size_bytes
from r4b_deploy.launch.docker_client import EngineConnection, api_explanation
from r4b_deploy.launch.docker_spec import (
    LABEL_CONFIG,
    LABEL_LAUNCH,
    LABEL_RUNTIME,
    classify_start_error,
    config_digest,
    run_kwargs,
)
from r4b_deploy.launch.docker_watch import FAILURE_LOG_NAME, DockerWatch
from r4b_deploy.launch.ports import port_problem

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from r4b_deploy.deployment import ContainerSpec, Deployment

STOP_TIMEOUT_S = 30  # SIGTERM grace before SIGKILL; with init=True vLLM stops in under a second
LAUNCH_TOKEN_BYTES = 8  # the launch label's token (docker_spec.LABEL_LAUNCH)


class DockerRuntime(DockerWatch, Runtime):
    """`Runtime` over the docker SDK. `on_build_line` receives build output (for a progress display).
    The read-only steps (`is_alive`, `status`, `logs`, `save_failure_log`) come from `DockerWatch`."""

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

    # -- a name held by another folder

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
        created: list[Any] = []
        try:
            created = self._ensure_networks(deployment)
            for spec in to_start:
                self._create_and_start(spec, secrets, wanted[spec.name][1], launch)
        except BaseException:
            self._remove_quietly(None, launch)
            if not kept:  # nothing of an earlier start runs on it: leave no network behind either
                for network in created:
                    with contextlib.suppress(docker.errors.DockerException):
                        network.remove()
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

    def _ensure_networks(self, deployment: Deployment) -> list[Any]:
        """The deployment's own network (replicas + router): Docker's DNS resolves container names
        there. Returns the networks this call created."""
        wanted = sorted({spec.network for spec in deployment.containers if spec.network})
        if not wanted:
            return []  # one engine: Docker's default bridge
        existing = {n.name for n in self.client.networks.list(filters={"label": f"{LABEL_DIR}={deployment.dir}"})}
        return [
            self.client.networks.create(name, driver="bridge", labels={LABEL_DIR: str(deployment.dir)})
            for name in wanted
            if name not in existing
        ]

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
