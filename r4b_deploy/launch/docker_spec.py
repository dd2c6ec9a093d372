"""Pure translations between the folder's ContainerSpec and docker-py, testable without an engine:
the `containers.create` arguments, the configuration digest, start errors, and `inspect` read back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from r4b_deploy.engine import restart_engine_hint
from r4b_deploy.errors import EnvironmentProblem, LaunchError, R4BError
from r4b_deploy.launch.base import RuntimeState
from r4b_deploy.launch.docker_client import first_line
from r4b_deploy.launch.ports import port_in_use_error

if TYPE_CHECKING:
    from r4b_deploy.deployment import ContainerSpec

# Our own labels, beside the renderer's io.r4b-deploy.dir / .project / .profile.
LABEL_CONFIG = "io.r4b-deploy.config"  # digest of the run configuration: same digest, same container
LABEL_RUNTIME = "io.r4b-deploy.runtime"
# A fresh token per start: a clean-up finds the container this very start created by it (removed by
# ID), never by name, which another `up` of the folder may hold by then.
LABEL_LAUNCH = "io.r4b-deploy.launch"
CONFIG_DIGEST_HEX = 16
NANOSECONDS_PER_SECOND = 1_000_000_000
MICROSECOND_DIGITS = 6  # what datetime keeps of docker's nanoseconds

GPU_DRIVER_MARKERS = ("could not select device driver", "unknown runtime specified nvidia")
PORT_MARKERS = ("port is already allocated", "address already in use")
NVIDIA_TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit (the nvidia-container-toolkit apt package, from NVIDIA's "
    "repository), then run `sudo nvidia-ctk runtime configure --runtime=docker` and "
    f"{restart_engine_hint()}; check with `r4b-deploy doctor`"
)


def config_digest(spec: ContainerSpec, env: Mapping[str, str]) -> str:
    """Digest of everything that shapes the container; a running container with the same digest is reused.

    The env values are hashed, not stored: the label then changes when the API key changes
    without carrying it.
    """
    payload = {
        "spec": spec.model_dump(mode="json"),
        "env": hashlib.sha256(json.dumps(dict(env), sort_keys=True).encode()).hexdigest(),
    }
    if spec.role == "router":
        del payload["env"]  # it gets no secret: a new key must not restart it
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:CONFIG_DIGEST_HEX]


def run_kwargs(spec: ContainerSpec, env: Mapping[str, str], extra_labels: Mapping[str, str]) -> dict[str, Any]:
    """docker-py `containers.create` arguments for a ContainerSpec: what compose would do with the same spec."""
    import docker

    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "entrypoint": list(spec.entrypoint) if spec.entrypoint else None,
        "name": spec.name,
        # The secrets go to vLLM only: the router holds no key (it passes Authorization through).
        "environment": {**spec.environment, **(dict(env) if spec.role == "replica" else {})},
        "cpuset_cpus": spec.cpuset_cpus,
        "network": spec.network,
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
            f"Docker cannot give the container GPUs ({first_line(explanation)}): "
            "the NVIDIA Container Toolkit is missing or not configured",
            fix=NVIDIA_TOOLKIT_FIX,
        )
    if any(marker in lowered for marker in PORT_MARKERS):
        return port_in_use_error(spec.bind_address, spec.host_port)
    return LaunchError(f"Docker could not start the container {spec.name}: {first_line(explanation)}")


def parse_started_at(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds and `Z`; Python 3.10's fromisoformat takes neither."""
    if not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:MICROSECOND_DIGITS].ljust(MICROSECOND_DIGITS, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def status_from_inspect(attrs: Mapping[str, Any]) -> tuple[RuntimeState, bool | None, str]:
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


def published_url(attrs: Mapping[str, Any]) -> str | None:
    """The loopback URL of the container's published port, from `inspect` (when the manifest is unreadable)."""
    bindings = ((attrs.get("HostConfig") or {}).get("PortBindings") or {}).values()
    for binding in bindings:
        for b in binding or []:
            if b.get("HostPort"):
                return f"http://127.0.0.1:{b['HostPort']}"
    return None


def requested_gpu_indices(attrs: Mapping[str, Any]) -> set[int] | None:
    """The GPU indices the container asked for; None for a count request (any GPU); empty for none."""
    requests_ = (attrs.get("HostConfig") or {}).get("DeviceRequests") or []
    if not requests_:
        return set()
    ids = [i for r in requests_ for i in (r.get("DeviceIDs") or [])]
    if ids and all(i.isdigit() for i in ids):
        return {int(i) for i in ids}
    return None
