"""The docker runtime's read-only side: find a folder's containers, and report on them (`is_alive`,
`status`, `logs`, the saved failure log). `DockerRuntime` inherits it; nothing here creates,
starts, stops or removes anything, so a folder whose manifest is damaged or gone can still be
looked at.

Containers are found by the folder's label (`io.r4b-deploy.dir`, its identity) and, for an
unlabelled leftover, by the folder's container name. With replicas, each container's role and
index labels (`io.r4b-deploy.role`, `io.r4b-deploy.replica`) name its service ("replica-0",
"router"): what `status` lists and `logs --replica I` / `--router` select.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r4b_deploy.deployment import (
    LABEL_DIR,
    LABEL_REPLICA,
    LABEL_ROLE,
    ONE_ENGINE_SERVICE,
    REPLICA_SERVICE,
    ROUTER_SERVICE,
    folder_identity,
    load_deployment,
    project_name_for,
)
from r4b_deploy.errors import R4BError, UsageError
from r4b_deploy.launch.base import MemberStatus, RuntimeName, RuntimeState, RuntimeStatus
from r4b_deploy.launch.docker_spec import parse_started_at, published_url, requested_gpu_indices, status_from_inspect

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

FAILURE_LOG_NAME = "container-failure.log"  # the full log of a container that failed to start
RUNNING_STATES = ("running", "starting", "unhealthy")


class DockerWatch:
    """What `DockerRuntime` reads from the engine about a folder; it supplies `name` and `client`."""

    name: RuntimeName
    client: docker.DockerClient

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
        attrs = container.attrs
        role = "router" if (container.labels or {}).get(LABEL_ROLE) == "router" else "replica"
        service = _service_of(container)
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
            chosen = [c for c in containers if _service_of(c) == service]
            if not chosen:
                known = ", ".join(sorted(_service_of(c) for c in containers))
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
        for container in sorted(containers, key=lambda c: ((c.labels or {}).get(LABEL_ROLE) == "router", c.name)):
            label = _service_of(container)
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


def _service_of(container: Container) -> str:
    """The compose service a container is, from its labels: "replica-0", "router", or, for the one
    engine of a deployment without a router, "vllm"."""
    labels = container.labels or {}
    if labels.get(LABEL_ROLE) == "router":
        return ROUTER_SERVICE
    index = labels.get(LABEL_REPLICA)
    return ONE_ENGINE_SERVICE if index is None else REPLICA_SERVICE.format(index=index)
