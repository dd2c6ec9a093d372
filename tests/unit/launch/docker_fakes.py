"""A fake docker-py client for the docker runtime's unit tests: containers, images and networks in
memory, recording what the runtime creates, stops and removes, and what each create was given.

Just what `DockerRuntime` calls; `inspect` (`attrs`) is built from the create arguments the way
the daemon reports them, so `status` reads back what `start` asked for. Health is "healthy" unless
a test says otherwise: `status` then never probes a port. The engine itself: tests/integration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker

STARTED_AT = "2026-01-01T00:00:00.000000000Z"


class FakeLogStream:
    """`container.logs(stream=True)`: byte chunks, closable."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


class FakeContainer:
    def __init__(
        self,
        engine: FakeEngine,
        name: str,
        labels: dict[str, str],
        status: str = "running",
        create_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.id = f"id-{engine.next_id()}"
        self.name = name
        self.labels = labels
        self.status = status
        self.create_kwargs = create_kwargs or {}
        self.health = "healthy"  # Docker's health check: "starting", "healthy", "unhealthy"
        self.restarts = 0
        self.log_lines: list[str] = []

    @property
    def attrs(self) -> dict[str, Any]:
        """`docker inspect`, as the daemon would report this container's create arguments."""
        kwargs = self.create_kwargs
        bindings = {
            port: [{"HostIp": address, "HostPort": str(host_port)}]
            for port, (address, host_port) in (kwargs.get("ports") or {}).items()
        }
        return {
            "State": {"Status": self.status, "Health": {"Status": self.health}, "StartedAt": STARTED_AT, "ExitCode": 0},
            "HostConfig": {
                "CpusetCpus": kwargs.get("cpuset_cpus") or "",
                "DeviceRequests": [dict(r) for r in kwargs.get("device_requests") or []] or None,
                "PortBindings": bindings,
            },
            "RestartCount": self.restarts,
        }

    def _check_exists(self) -> None:
        if self.id not in self.engine.store:
            raise docker.errors.NotFound("gone")

    def remove(self, force: bool = False) -> None:
        self._check_exists()
        self.engine.removed.append(self.id)
        del self.engine.store[self.id]

    def start(self) -> None:
        self.status = "running"

    def stop(self, timeout: int | None = None) -> None:
        self._check_exists()
        self.engine.stopped.append(self.name)
        self.status = "exited"

    def reload(self) -> None:
        self._check_exists()

    def logs(self, stream: bool = False, follow: bool = False, tail: int | str = "all") -> FakeLogStream:
        self.engine.log_reads.append(self.name)
        lines = self.log_lines if tail == "all" else self.log_lines[-int(tail) :]
        return FakeLogStream([(line + "\n").encode() for line in lines])


class FakeNetwork:
    def __init__(self, networks: FakeNetworks, name: str, labels: dict[str, str]) -> None:
        self.networks = networks
        self.name = name
        self.labels = labels

    def remove(self) -> None:
        if self.name not in self.networks.store:
            raise docker.errors.NotFound(self.name)
        del self.networks.store[self.name]
        self.networks.removed.append(self.name)


class FakeNetworks:
    """`client.networks`: by name, with labels; records what is created and removed."""

    def __init__(self) -> None:
        self.store: dict[str, FakeNetwork] = {}
        self.created: list[tuple[str, dict[str, str]]] = []
        self.removed: list[str] = []

    def list(self, filters: dict[str, str] | None = None) -> list[FakeNetwork]:
        found = list(self.store.values())
        if filters and "label" in filters:
            key, _, value = filters["label"].partition("=")
            found = [n for n in found if n.labels.get(key) == value]
        return found

    def create(self, name: str, driver: str = "bridge", labels: dict[str, str] | None = None) -> FakeNetwork:
        if name in self.store:
            raise docker.errors.APIError(f"409 Conflict: network with name {name} already exists")
        self.created.append((name, dict(labels or {})))
        self.store[name] = FakeNetwork(self, name, dict(labels or {}))
        return self.store[name]


class FakeEngine:
    """`client.containers`, `client.images` and `client.networks`: just what `DockerRuntime` calls."""

    def __init__(self) -> None:
        self.store: dict[str, FakeContainer] = {}
        self.removed: list[str] = []  # container IDs
        self.stopped: list[str] = []  # container names, in order
        self.created: list[dict[str, Any]] = []  # each create's arguments, in order
        self.log_reads: list[str] = []  # container names whose log was read
        self.on_create: str = "ok"  # "conflict": the name is taken; "interrupt": made, then Ctrl-C
        self.fail_create: set[str] = set()  # container names whose create the daemon refuses
        self.containers = self
        self.images = self
        self.networks = FakeNetworks()
        self._ids = 0

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add(self, name: str, labels: dict[str, str], status: str = "running") -> FakeContainer:
        """A container made outside this start (by another `up`, or left over)."""
        container = FakeContainer(self, name, labels, status)
        self.store[container.id] = container
        return container

    def named(self, name: str) -> FakeContainer:
        (container,) = [c for c in self.store.values() if c.name == name]
        return container

    # images
    def get(self, name: str) -> Any:
        if name.startswith("r4b-deploy"):  # an image tag: it exists
            return object()
        for container in self.store.values():
            if container.name == name:
                return container
        raise docker.errors.NotFound(name)

    # containers
    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:
        found = list(self.store.values())
        if filters and "label" in filters:
            key, _, value = filters["label"].partition("=")
            found = [c for c in found if c.labels.get(key) == value]
        if filters and "name" in filters:
            found = [c for c in found if filters["name"] in c.name]
        return found

    def create(self, name: str, labels: dict[str, str], **kwargs: Any) -> FakeContainer:
        if self.on_create == "conflict":
            raise docker.errors.APIError(f'409 Conflict: the container name "/{name}" is already in use')
        if name in self.fail_create:
            raise docker.errors.APIError(f"500 Server Error: failed to create {name}: no such entrypoint")
        self.created.append({"name": name, "labels": labels, **kwargs})
        container = FakeContainer(self, name, labels, status="created", create_kwargs=kwargs)
        self.store[container.id] = container
        if self.on_create == "interrupt":  # the daemon made it; the reply never reached us
            raise KeyboardInterrupt
        return container
