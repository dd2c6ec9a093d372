"""The docker runtime with replicas, over a fake engine (docker_fakes): N vLLM replicas, then
vLLM's router, on the deployment's own network; reused or replaced one by one; a failed start
removes only what it created; `down` stops the router first; `logs` and `status` per service.
The engine itself: tests/integration/test_up_replicas.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_fakes import FakeEngine
from unit.render.render_plans import rehearsal_replicas_plan, replicas_plan

from r4b_deploy.deployment import LABEL_DIR, LABEL_REPLICA, LABEL_ROLE, Deployment
from r4b_deploy.errors import LaunchError, UsageError
from r4b_deploy.launch import docker_runtime
from r4b_deploy.launch.docker_runtime import DockerRuntime
from r4b_deploy.launch.docker_spec import LABEL_LAUNCH
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions

SECRETS = {"VLLM_API_KEY": "sk-replicas-test-key"}
API_PORT = 18600  # the router's; the replicas' loopback ports follow it (nothing binds them here)


@pytest.fixture(autouse=True)
def _no_port_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake engine binds no port: whether this host's ports are free is not what is tested."""
    monkeypatch.setattr(docker_runtime, "port_problem", lambda host, port: None)


@pytest.fixture
def rehearsal(tmp_path: Path) -> Deployment:
    """Two CPU replicas, one core each, behind the router."""
    options = RenderOptions(host_port=API_PORT, hf_cache_dir=tmp_path / "hf")
    return write_deployment(rehearsal_replicas_plan(), options, tmp_path / "r")


@pytest.fixture
def gpus(tmp_path: Path) -> Deployment:
    """Four TP-2 replicas on eight GPUs behind the router."""
    options = RenderOptions(host_port=API_PORT, hf_cache_dir=tmp_path / "hf")
    return write_deployment(replicas_plan(), options, tmp_path / "g")


def _started(deployment: Deployment) -> tuple[FakeEngine, DockerRuntime]:
    engine = FakeEngine()
    runtime = DockerRuntime(client=engine)  # type: ignore[arg-type]
    runtime.start(deployment, SECRETS)
    return engine, runtime


def _service_name(deployment: Deployment, service: str) -> str:
    return f"{deployment.project_name}-{service}"


# -- start


def test_start_creates_the_replicas_then_the_router_each_with_its_own_labels(rehearsal: Deployment) -> None:
    engine, _ = _started(rehearsal)
    assert [k["name"] for k in engine.created] == [spec.name for spec in rehearsal.containers]
    *replicas, router = engine.created
    assert len(replicas) == len(rehearsal.replicas) == rehearsal_replicas_plan().replica_count
    for spec, kwargs in zip(rehearsal.replicas, replicas, strict=True):
        assert kwargs["labels"][LABEL_ROLE] == "replica"
        assert kwargs["labels"][LABEL_REPLICA] == str(spec.replica_index)
        assert kwargs["environment"] == {**spec.environment, **SECRETS}  # vLLM checks the key
        assert kwargs["cpuset_cpus"] == spec.cpuset_cpus
        assert "device_requests" not in kwargs  # rehearsing: CPU only
        assert kwargs.get("entrypoint") is None  # the image's own: vllm serve
    assert len({k["cpuset_cpus"] for k in replicas}) == len(replicas), "two replicas share a core"
    assert router["labels"][LABEL_ROLE] == "router" and LABEL_REPLICA not in router["labels"]
    assert "VLLM_API_KEY" not in router.get("environment", {}), "the router was given the API key"
    assert router["entrypoint"] == rehearsal.router.entrypoint and router["image"] == rehearsal.image_tag
    assert router["ports"] == {"8000/tcp": ("127.0.0.1", API_PORT)}
    assert all(k["labels"][LABEL_DIR] == str(rehearsal.dir) for k in engine.created)
    assert {c.status for c in engine.store.values()} == {"running"}


def test_every_container_joins_the_projects_network_created_once_with_the_folder_label(rehearsal: Deployment) -> None:
    engine, runtime = _started(rehearsal)
    network = rehearsal.project_name
    assert {k["network"] for k in engine.created} == {network}
    assert engine.networks.created == [(network, {LABEL_DIR: str(rehearsal.dir)})]
    engine.named(_service_name(rehearsal, "replica-0")).status = "exited"
    runtime.start(rehearsal, SECRETS)  # replaces the one replica; the network is already there
    assert len(engine.networks.created) == 1


def test_gpu_replicas_each_request_their_own_gpus_and_the_router_none(gpus: Deployment) -> None:
    engine, _ = _started(gpus)
    *replicas, router = engine.created
    held: list[str] = []
    for spec, kwargs in zip(gpus.replicas, replicas, strict=True):
        (request,) = kwargs["device_requests"]
        assert request["DeviceIDs"] == spec.gpu_device_ids and request["Capabilities"] == [["gpu"]]
        held += request["DeviceIDs"]
        assert kwargs["environment"] == {**spec.environment, **SECRETS}
    assert len(held) == len(set(held)) == len(gpus.plan.gpus), "replicas share or leave out a GPU"
    assert "device_requests" not in router


def test_a_second_start_with_everything_running_reuses_it_all(rehearsal: Deployment) -> None:
    engine, runtime = _started(rehearsal)
    before = set(engine.store)
    runtime.start(rehearsal, SECRETS)
    assert len(engine.created) == len(rehearsal.containers), "the second start created a container"
    assert set(engine.store) == before and engine.removed == []
    assert runtime.running_endpoint(rehearsal, SECRETS) is not None


def test_a_start_with_one_replica_exited_replaces_only_that_one(rehearsal: Deployment) -> None:
    engine, runtime = _started(rehearsal)
    exited = engine.named(_service_name(rehearsal, "replica-1"))
    exited.status = "exited"
    others = {c.id for c in engine.store.values()} - {exited.id}
    assert runtime.running_endpoint(rehearsal, SECRETS) is None
    runtime.start(rehearsal, SECRETS)
    assert [k["name"] for k in engine.created[len(rehearsal.containers) :]] == [exited.name]
    assert engine.removed == [exited.id]
    assert others < set(engine.store) and engine.named(exited.name).status == "running"


def test_a_start_that_fails_on_the_router_removes_the_replicas_it_created(rehearsal: Deployment) -> None:
    engine = FakeEngine()
    runtime = DockerRuntime(client=engine)  # type: ignore[arg-type]
    router = rehearsal.router
    assert router is not None
    engine.fail_create = {router.name}
    with pytest.raises(LaunchError, match=f"could not start the container {router.name}: 500 Server Error"):
        runtime.start(rehearsal, SECRETS)
    assert engine.store == {}, "a failed start left containers behind"
    assert len(engine.removed) == len(rehearsal.replicas)
    assert engine.networks.store == {}, "a failed first start left its network behind"


def test_a_failed_router_start_keeps_the_replicas_an_earlier_start_made(rehearsal: Deployment) -> None:
    """The clean-up goes by this start's launch label: running replicas it reused are not its own."""
    engine, runtime = _started(rehearsal)
    router = rehearsal.router
    assert router is not None
    engine.named(router.name).status = "exited"
    replicas = {c.id: c.labels[LABEL_LAUNCH] for c in engine.store.values() if c.name != router.name}
    engine.fail_create = {router.name}
    with pytest.raises(LaunchError, match=router.name):
        runtime.start(rehearsal, SECRETS)
    assert {c.id: c.labels[LABEL_LAUNCH] for c in engine.store.values()} == replicas
    assert list(engine.networks.store) == [rehearsal.router.network]  # the replicas still use it


# -- stop


def test_stop_stops_the_router_first_and_removes_every_container_and_the_network(rehearsal: Deployment) -> None:
    engine, runtime = _started(rehearsal)
    router = rehearsal.router
    assert router is not None
    result = runtime.stop(rehearsal.dir)
    assert engine.stopped[0] == router.name
    assert sorted(engine.stopped) == sorted(spec.name for spec in rehearsal.containers)
    assert engine.store == {} and engine.networks.store == {}
    assert result.stopped and f"network {rehearsal.project_name}" in result.removed
    assert set(result.removed) >= {spec.name for spec in rehearsal.containers}

    again = runtime.stop(rehearsal.dir)
    assert not again.stopped and again.removed == []


# -- logs


def _with_logs(deployment: Deployment) -> tuple[FakeEngine, DockerRuntime]:
    engine, runtime = _started(deployment)
    for spec in deployment.containers:
        engine.named(spec.name).log_lines = [f"{spec.service} line 1", f"{spec.service} line 2"]
    engine.log_reads.clear()
    return engine, runtime


def test_logs_of_one_service_read_only_that_container(rehearsal: Deployment) -> None:
    engine, runtime = _with_logs(rehearsal)
    assert list(runtime.logs(rehearsal.dir, service="replica-1")) == ["replica-1 line 1", "replica-1 line 2"]
    assert engine.log_reads == [_service_name(rehearsal, "replica-1")]
    assert list(runtime.logs(rehearsal.dir, tail=1, service="router")) == ["router line 2"]


def test_logs_of_several_containers_prefix_each_line_with_its_service(rehearsal: Deployment) -> None:
    _, runtime = _with_logs(rehearsal)
    assert list(runtime.logs(rehearsal.dir)) == [
        "[replica-0] replica-0 line 1",
        "[replica-0] replica-0 line 2",
        "[replica-1] replica-1 line 1",
        "[replica-1] replica-1 line 2",
        "[router] router line 1",
        "[router] router line 2",
    ]


def test_following_several_containers_without_a_service_is_a_usage_error(rehearsal: Deployment) -> None:
    engine, runtime = _with_logs(rehearsal)
    with pytest.raises(UsageError, match="--follow reads one container's log"):
        list(runtime.logs(rehearsal.dir, follow=True))
    assert engine.log_reads == []


def test_an_unknown_service_is_a_usage_error_naming_the_ones_there_are(rehearsal: Deployment) -> None:
    _, runtime = _with_logs(rehearsal)
    with pytest.raises(UsageError, match="no replica-7") as caught:
        list(runtime.logs(rehearsal.dir, service="replica-7"))
    assert caught.value.fix == "pick one of: replica-0, replica-1, router"


# -- status


def test_status_lists_each_replica_then_the_router_from_inspect(gpus: Deployment) -> None:
    engine, runtime = _started(gpus)
    engine.named(_service_name(gpus, "replica-2")).restarts = 2
    status = runtime.status(gpus.dir)
    assert status.state == "running" and status.healthy is True
    assert [m.service for m in status.members] == ["replica-0", "replica-1", "replica-2", "replica-3", "router"]
    assert [m.role for m in status.members] == ["replica"] * len(gpus.replicas) + ["router"]
    assert [m.gpus for m in status.members] == [spec.gpu_device_ids for spec in gpus.containers]
    assert [m.restarts for m in status.members] == [0, 0, 2, 0, 0]
    assert [m.url for m in status.members] == [spec.local_url for spec in gpus.containers]
    assert all(m.healthy for m in status.members)
    assert status.detail.startswith(f"{_service_name(gpus, 'router')}: ")
    assert "4 of 4 replicas healthy" in status.detail


def test_status_reports_each_replicas_cpus(rehearsal: Deployment) -> None:
    _, runtime = _started(rehearsal)
    members = runtime.status(rehearsal.dir).members
    assert [m.cpus for m in members] == [spec.cpuset_cpus for spec in rehearsal.containers]
    assert members[-1].cpus is None and all(m.gpus == [] for m in members)


def test_one_unhealthy_replica_makes_the_deployment_unhealthy(rehearsal: Deployment) -> None:
    engine, runtime = _started(rehearsal)
    engine.named(_service_name(rehearsal, "replica-1")).health = "unhealthy"
    status = runtime.status(rehearsal.dir)
    assert status.state == "unhealthy" and status.healthy is False
    assert "1 of 2 replicas healthy" in status.detail
    by_service = {m.service: m for m in status.members}
    assert by_service["replica-1"].state == "unhealthy" and by_service["replica-1"].healthy is False
    assert by_service["replica-0"].healthy and by_service["router"].healthy
