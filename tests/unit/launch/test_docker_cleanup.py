"""The docker runtime's clean-up after a failed start removes only the container that start
created, by ID (its own launch label), never by name: another `up` of the folder may hold the
name by then (issue 11: the loser's clean-up removed the winner's container). Over a fake
docker-py client that records what is removed (docker_fakes); the engine itself: tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_fakes import FakeContainer, FakeEngine

from r4b_deploy.deployment import LABEL_DIR
from r4b_deploy.errors import LaunchError
from r4b_deploy.launch.docker_runtime import DockerRuntime
from r4b_deploy.launch.docker_spec import LABEL_CONFIG, LABEL_LAUNCH
from r4b_deploy.launch.ports import free_port
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions


@pytest.fixture
def deployment(tmp_path: Path):
    plan = make_plan(PlanRequest(gpu="L4"))
    return write_deployment(plan, RenderOptions(host_port=free_port(), hf_cache_dir=tmp_path / "hf"), tmp_path / "d")


def _winner(engine: FakeEngine, deployment) -> FakeContainer:
    """The container another `up` of the same folder made meanwhile (same name, same folder label)."""
    labels = {LABEL_DIR: str(deployment.dir), LABEL_CONFIG: "other", LABEL_LAUNCH: "theirs"}
    winner = FakeContainer(engine, deployment.container.name, labels)
    engine.store[winner.id] = winner
    return winner


def test_a_start_that_loses_the_name_race_leaves_the_winner_running(deployment) -> None:
    engine = FakeEngine()
    runtime = DockerRuntime(client=engine)  # type: ignore[arg-type]
    engine.on_create = "conflict"
    real_list = engine.list
    winner: list[FakeContainer] = []

    def list_then_race(all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:
        found = real_list(all=all, filters=filters)
        if not winner and filters and "name" in filters:  # after start() looked: the other `up` creates
            winner.append(_winner(engine, deployment))
        return found

    engine.list = list_then_race  # type: ignore[method-assign]
    with pytest.raises(LaunchError, match="already in use"):
        runtime.start(deployment, {"VLLM_API_KEY": "k"})

    assert winner and engine.removed == [], "the clean-up removed a container this start did not create"
    assert winner[0].id in engine.store


def test_an_interrupted_create_removes_the_container_it_made_by_its_launch_label(deployment) -> None:
    engine = FakeEngine()
    runtime = DockerRuntime(client=engine)  # type: ignore[arg-type]
    engine.on_create = "interrupt"

    with pytest.raises(KeyboardInterrupt):
        runtime.start(deployment, {"VLLM_API_KEY": "k"})

    assert len(engine.removed) == 1 and engine.store == {}


def test_each_start_has_its_own_launch_label(deployment) -> None:
    engine = FakeEngine()
    runtime = DockerRuntime(client=engine)  # type: ignore[arg-type]
    runtime.start(deployment, {"VLLM_API_KEY": "k"})
    (first,) = engine.store.values()
    first.remove()
    runtime.start(deployment, {"VLLM_API_KEY": "k"})
    (second,) = engine.store.values()
    assert first.labels[LABEL_LAUNCH] != second.labels[LABEL_LAUNCH]
    assert first.labels[LABEL_CONFIG] == second.labels[LABEL_CONFIG]  # the launch label is not configuration
    assert runtime.running_endpoint(deployment, {"VLLM_API_KEY": "k"}) is not None
    assert runtime.running_endpoint(deployment, {"VLLM_API_KEY": "other key"}) is None
