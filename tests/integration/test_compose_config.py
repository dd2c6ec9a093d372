"""The real compose v1 binary (Debian's docker-compose 1.29.2) accepts every rendered compose file.

`docker-compose config` validates and resolves a file without an engine: the GPU request, the
127.0.0.1 port binding, /dev/shm and the env file are checked as compose itself reads them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import require
from unit.render.render_plans import golden_cases

from r4b_deploy.render.deployment import read_env_file, write_deployment
from r4b_deploy.render.options import RenderOptions

pytestmark = pytest.mark.integration
CASES = ["light", "heavy", "tp8", "rehearsal", "light-custom"]
CONFIG_TIMEOUT_S = 60


def _compose_config(folder: Path) -> dict:
    binary = shutil.which("docker-compose")
    require(binary is not None, "docker-compose (compose v1) is not installed: apt-get install docker-compose")
    result = subprocess.run(
        [binary, "-p", "r4b-config-test", "-f", str(folder / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=CONFIG_TIMEOUT_S,
        cwd=folder,
    )
    # compose resolves env_file into `environment`: never show its output (it holds the API key).
    assert result.returncode == 0, f"docker-compose config refused the file: {result.stderr[-2000:]}"
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("case", CASES)
def test_compose_v1_accepts_and_resolves_the_rendered_file(case: str, tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path / "inputs")[case]
    options = RenderOptions(**kwargs)
    deployment = write_deployment(plan, options, tmp_path / "deploy", environ={})
    config = _compose_config(deployment.dir)
    service = config["services"]["vllm"]
    spec = deployment.container

    assert service["image"] == deployment.image_tag
    assert service["container_name"] == deployment.project_name
    assert Path(service["build"]["context"]) == deployment.dir
    assert service["command"] == spec.command
    bind = "0.0.0.0" if options.public else "127.0.0.1"
    assert service["ports"] == [f"{bind}:{options.host_port}:8000/tcp"]
    assert int(service["shm_size"]) == spec.shm_size_bytes
    assert service["init"] is True
    assert service["restart"] == "unless-stopped"
    assert service["healthcheck"]["test"][-1] == "http://127.0.0.1:8000/health"
    assert service["labels"]["io.r4b-deploy.dir"] == str(deployment.dir)
    # env_file resolved: the key compose passes is the one r4b.env holds.
    assert service["environment"]["VLLM_API_KEY"] == read_env_file(deployment.dir)["VLLM_API_KEY"]

    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    if plan.rehearsal:
        assert devices is None
    else:
        assert len(devices) == 1
        assert devices[0]["driver"] == "nvidia"
        assert devices[0]["capabilities"] == ["gpu"]
        if plan.gpu_indices:
            assert devices[0]["device_ids"] == [str(i) for i in plan.gpu_indices]
        else:
            assert devices[0]["count"] == plan.vllm.tensor_parallel_size

    mounts = service.get("volumes", [])
    for volume in spec.volumes:
        mode = "ro" if volume.read_only else "rw"
        assert f"{volume.source}:{volume.target}:{mode}" in mounts
    if options.ulimits:
        assert service["ulimits"] == options.ulimits


def test_compose_v1_accepts_ipc_host(tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path / "inputs")["light"]
    deployment = write_deployment(plan, RenderOptions(**kwargs, ipc_host=True), tmp_path / "deploy", environ={})
    service = _compose_config(deployment.dir)["services"]["vllm"]
    assert service["ipc"] == "host"
    assert "shm_size" not in service


PLANNER_REQUESTS = [{"gpu": "L4"}, {"gpu": "H100-80GB"}, {"gpu": "A100-40GB:8"}, {"rehearsal": True}]


@pytest.mark.parametrize("request_kwargs", PLANNER_REQUESTS)
def test_compose_v1_accepts_what_the_planner_plans(request_kwargs: dict, tmp_path: Path) -> None:
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.planning.planner import make_plan

    plan = make_plan(PlanRequest(**request_kwargs))
    deployment = write_deployment(plan, RenderOptions(hf_cache_dir=tmp_path / "hf"), tmp_path / "deploy", environ={})
    service = _compose_config(deployment.dir)["services"]["vllm"]
    assert service["command"] == deployment.container.command
    assert service["command"][0] == plan.vllm.model
    assert service["ports"] == ["127.0.0.1:8000:8000/tcp"]
