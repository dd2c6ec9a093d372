"""The connection to the Docker engine: made on first use, one clear error when no engine answers."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from r4b_deploy.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker

API_TIMEOUT_S = 120  # ordinary API calls (inspect, create, stop)
# The engine went away mid-way (connect() words the no-engine hint for this machine: no_engine_fix()).
NO_ENGINE_FIX = (
    "check that the Docker engine still runs (`r4b-deploy doctor` says how to start one), "
    "or run without Docker: --runtime process"
)


def connect(timeout_s: float = API_TIMEOUT_S) -> docker.DockerClient:
    """A client to the engine DOCKER_HOST names (or the default socket); EnvironmentProblem if none answers."""
    import docker

    from r4b_deploy.engine import no_engine_fix

    where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise EnvironmentProblem(
            f"cannot reach the Docker engine at {where}: {first_line(str(exc))}", fix=no_engine_fix()
        ) from exc
    return client


class EngineConnection:
    """A client made on first use. `reset()` closes it (closing a build's connection cancels the
    build) and the next use connects afresh."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect()
        return self._client

    def reset(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def api_explanation(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)
