"""The real compose binaries accept every rendered compose file: v2 (`docker compose`, the current
one; Debian's static build, installed by the engine helper's `install`) and v1 (Debian bookworm's
docker-compose 1.29.2, end-of-life but still what many hosts have).

`compose config` validates and resolves a file without an engine: the GPU request, the
127.0.0.1 port binding, /dev/shm and the env file are checked as compose itself reads them. v2
prints ports and volumes in their long form; they are folded back to the short form v1 prints.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import require
from unit.render.render_plans import golden_cases

from r4b_deploy.deployment import read_env_file
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions

pytestmark = pytest.mark.integration
CASES = ["light", "heavy", "tp8", "rehearsal", "light-custom"]
CONFIG_TIMEOUT_S = 60
COMPOSES = ["v2", "v1"]


def _compose_binary(version: str) -> list[str]:
    if version == "v1":
        binary = shutil.which("docker-compose")
        require(binary is not None, "docker-compose (compose v1) is not installed: apt-get install docker-compose")
        return [binary]  # type: ignore[list-item]
    docker = shutil.which("docker")
    works = docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    require(works, "compose v2 (`docker compose`) is not installed: r4b-deploy engine install")
    return [docker, "compose"]  # type: ignore[list-item]


def _short_form(service: dict) -> dict:
    """v2's long-form ports and volumes as v1's short strings; v2's quoted numbers as v1 has them."""
    ports = service.get("ports", [])
    if ports and isinstance(ports[0], dict):
        service["ports"] = [f"{p['host_ip']}:{p['published']}:{p['target']}/{p['protocol']}" for p in ports]
    volumes = service.get("volumes", [])
    if volumes and isinstance(volumes[0], dict):
        service["volumes"] = [f"{v['source']}:{v['target']}:{'ro' if v.get('read_only') else 'rw'}" for v in volumes]
    return service


def _compose_config(folder: Path, version: str = "v1") -> dict:
    result = subprocess.run(
        [*_compose_binary(version), "-p", "r4b-config-test", "-f", str(folder / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=CONFIG_TIMEOUT_S,
        cwd=folder,
    )
    # compose resolves env_file into `environment`: never show its output (it holds the API key).
    assert result.returncode == 0, f"compose {version} config refused the file: {result.stderr[-2000:]}"
    config = yaml.safe_load(result.stdout)
    for name, service in config["services"].items():
        config["services"][name] = _short_form(service)
    return config


@pytest.fixture(params=COMPOSES)
def compose(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("case", CASES)
def test_compose_accepts_and_resolves_the_rendered_file(case: str, compose: str, tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path / "inputs")[case]
    options = RenderOptions(**kwargs)
    deployment = write_deployment(plan, options, tmp_path / "deploy", environ={})
    config = _compose_config(deployment.dir, compose)
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


def test_compose_accepts_ipc_host(compose: str, tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path / "inputs")["light"]
    deployment = write_deployment(plan, RenderOptions(**kwargs, ipc_host=True), tmp_path / "deploy", environ={})
    service = _compose_config(deployment.dir, compose)["services"]["vllm"]
    assert service["ipc"] == "host"
    assert "shm_size" not in service


PLANNER_REQUESTS = [{"gpu": "L4"}, {"gpu": "H100-80GB"}, {"gpu": "A100-40GB:8"}, {"rehearsal": True}]


@pytest.mark.parametrize("request_kwargs", PLANNER_REQUESTS)
def test_compose_accepts_what_the_planner_plans(request_kwargs: dict, compose: str, tmp_path: Path) -> None:
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.planning.planner import make_plan

    plan = make_plan(PlanRequest(**request_kwargs))
    deployment = write_deployment(plan, RenderOptions(hf_cache_dir=tmp_path / "hf"), tmp_path / "deploy", environ={})
    services = _compose_config(deployment.dir, compose)["services"]
    assert sorted(services) == sorted(c.service for c in deployment.containers)
    service = services[deployment.container.service]
    assert service["command"] == deployment.container.command
    assert service["command"][0] == plan.vllm.model
    api = services["router" if deployment.router else "vllm"]
    assert api["ports"] == ["127.0.0.1:8000:8000/tcp"]


@pytest.mark.parametrize("case", ["replicas", "rehearsal-replicas"])
def test_compose_runs_the_replicas_behind_the_router(case: str, compose: str, tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path / "inputs")[case]
    options = RenderOptions(**kwargs)
    deployment = write_deployment(plan, options, tmp_path / "deploy", environ={})
    services = _compose_config(deployment.dir, compose)["services"]
    replicas = [f"replica-{i}" for i in range(plan.replica_count)]
    assert sorted(services) == sorted([*replicas, "router"])
    key = read_env_file(deployment.dir)["VLLM_API_KEY"]
    groups = plan.replica_gpu_indices()
    for index, name in enumerate(replicas):
        service = services[name]
        # Loopback ports of their own, whatever --public says; the key from r4b.env; their own GPUs or core.
        assert service["ports"] == [f"127.0.0.1:{options.host_port + 1 + index}:8000/tcp"]
        assert service["environment"]["VLLM_API_KEY"] == key
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        if plan.rehearsal:
            assert devices is None and str(service["cpuset"]) == str(index)
            assert service["environment"]["VLLM_CPU_OMP_THREADS_BIND"] == str(index)
        else:
            assert devices[0]["device_ids"] == [str(i) for i in groups[index]]
    router = services["router"]
    bind = "0.0.0.0" if options.public else "127.0.0.1"
    assert router["ports"] == [f"{bind}:{options.host_port}:8000/tcp"]
    assert router["image"] == services["replica-0"]["image"] == deployment.image_tag  # one build
    assert router["entrypoint"] == ["/opt/router/bin/vllm-router"]
    assert "VLLM_API_KEY" not in router.get("environment", {})  # the replicas check the key
    assert {name: dep["condition"] for name, dep in router["depends_on"].items()} == dict.fromkeys(
        replicas, "service_healthy"
    )
    workers = router["command"][router["command"].index("--worker-urls") + 1 :][: plan.replica_count]
    assert workers == [f"http://{services[name]['container_name']}:8000" for name in replicas]


@pytest.mark.parametrize("name", ["dep$HOME", "dep$(id)", "${X:?boom}"])
def test_compose_reads_a_folder_path_with_a_dollar_literally(name: str, compose: str, tmp_path: Path) -> None:
    # Unescaped, compose interpolates $HOME into the label (`down` then misses the container) or
    # refuses the file outright (`$(`, `${X:?boom}`).
    plan, kwargs = golden_cases(tmp_path / "inputs")["light"]
    deployment = write_deployment(plan, RenderOptions(**kwargs), tmp_path / name, environ={})
    service = _compose_config(deployment.dir, compose)["services"]["vllm"]
    # `config` prints a file compose can read again: every literal `$` doubled, the build context too.
    label = service["labels"]["io.r4b-deploy.dir"].replace("$$", "$")
    assert label == str(deployment.dir) == str(tmp_path / name)
    assert Path(service["build"]["context"].replace("$$", "$")) == deployment.dir


def test_compose_reads_the_largest_sizes_back_as_given(compose: str, tmp_path: Path) -> None:
    # Compose v2 parses shm_size through a float64: 2^63-1 came back as -2^63.
    from r4b_deploy.render.options import MAX_SHM_SIZE_BYTES, ulimit_max

    plan, kwargs = golden_cases(tmp_path / "inputs")["light"]
    limits = {"nofile": ulimit_max("nofile"), "memlock": ulimit_max("memlock")}
    options = RenderOptions(**{**kwargs, "shm_size_bytes": MAX_SHM_SIZE_BYTES, "ulimits": limits})
    deployment = write_deployment(plan, options, tmp_path / "deploy", environ={})
    service = _compose_config(deployment.dir, compose)["services"]["vllm"]
    assert int(service["shm_size"]) == MAX_SHM_SIZE_BYTES
    assert service["ulimits"] == limits
