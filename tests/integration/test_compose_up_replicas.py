"""The rendered compose file with replicas, run by compose itself (v2, and v1 where v2 is missing), as
a user who never runs `r4b-deploy up` would: `docker compose -p PROJECT up -d` on the rehearsal
folder starts two CPU replicas and the router (`depends_on: service_healthy`), the router reaches
the replicas by container name on compose's own network, the API key is checked at the replicas,
`r4b-deploy status` finds what compose started, and `r4b-deploy down` removes the containers and
the network (it carries the folder's label).

The image is built first through the docker runtime (the same content-addressed tag compose names),
so compose builds nothing; a cold build takes minutes, later runs find it in the engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from fixtures.docker_engine import free_port
from fixtures.nvml import r4b_deploy_command
from support import require

from r4b_deploy.deployment import LABEL_DIR, read_env_file

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.vllm, pytest.mark.slow]

BUILD_TIMEOUT_S = 3600  # a cold build on a busy 2-core machine
COMPOSE_TIMEOUT_S = 300
HEALTHY_TIMEOUT_S = 600  # two CPU replicas load in ~60 s on 2 cores; the router listens once both are healthy
POLL_S = 2.0


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    require(v1 is not None, "compose (v2 or v1): r4b-deploy engine install")
    return [v1]  # type: ignore[list-item]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}
    return subprocess.run([*r4b_deploy_command(), *args], env=env, capture_output=True, text=True, timeout=300)


def test_compose_runs_the_replicas_and_the_router(docker_client, docker_base_image: str, tmp_path: Path) -> None:
    from r4b_deploy.launch.docker_runtime import DockerRuntime
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.planning.planner import make_plan
    from r4b_deploy.rehearsal.vllm_cpu import ensure_wheelhouse
    from r4b_deploy.render.deployment import write_deployment
    from r4b_deploy.render.options import RenderOptions

    port = free_port()
    plan = make_plan(PlanRequest(rehearsal=True, replicas=2))
    options = RenderOptions(wheelhouse=ensure_wheelhouse(), host_port=port)
    deployment = write_deployment(plan, options, tmp_path / "deploy")
    DockerRuntime(build_timeout_s=BUILD_TIMEOUT_S).build(deployment)
    compose = [*_compose(), "-p", deployment.project_name, "-f", str(deployment.compose_file)]
    url = f"http://127.0.0.1:{port}"
    try:
        up = subprocess.run(
            [*compose, "up", "-d"], capture_output=True, text=True, timeout=COMPOSE_TIMEOUT_S, cwd=deployment.dir
        )
        assert up.returncode == 0, up.stderr[-3000:]
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while True:
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the router never answered /health"
            time.sleep(POLL_S)

        key = read_env_file(deployment.dir)["VLLM_API_KEY"]
        body = {"model": "r4b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        for _ in range(4):  # round robin: two to each replica
            assert requests.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60).status_code == 200  # fmt: skip
        assert requests.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code == 401

        status = _cli("status", "--dir", str(deployment.dir), "--json")
        assert status.returncode == 0, status.stderr
        members = {m["service"]: m for m in json.loads(status.stdout)["members"]}
        assert set(members) == {"replica-0", "replica-1", "router"}
        assert all(m["state"] == "running" for m in members.values()), members
        assert [members[f"replica-{i}"]["cpus"] for i in range(2)] == ["0", "1"]
        assert all((members[f"replica-{i}"]["requests_served"] or 0) >= 2 for i in range(2)), members
    finally:
        down = _cli("down", "--dir", str(deployment.dir))
        if down.returncode != 0:
            subprocess.run([*compose, "down"], capture_output=True, timeout=COMPOSE_TIMEOUT_S, cwd=deployment.dir)
    assert down.returncode == 0, down.stderr
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={deployment.dir}"}) == []
    assert docker_client.networks.list(filters={"label": f"{LABEL_DIR}={deployment.dir}"}) == []
