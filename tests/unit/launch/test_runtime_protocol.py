"""One runtime protocol, one factory, one name type, one `--runtime` option."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from r4b_deploy.deployment import load_deployment
from r4b_deploy.errors import UsageError
from r4b_deploy.launch.base import RUNTIME_NAMES, Runtime, make_runtime
from r4b_deploy.launch.docker_runtime import DockerRuntime
from r4b_deploy.launch.process_runtime import LOG_NAME, ProcessRuntime
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions

STEPS = ("build", "start", "running_endpoint", "is_alive", "logs", "save_failure_log", "stop", "status")


def test_the_factory_makes_each_runtime_by_name_without_connecting() -> None:
    assert RUNTIME_NAMES == ("docker", "process")
    docker = make_runtime("docker")
    process = make_runtime("process")
    assert isinstance(docker, DockerRuntime) and docker.name == "docker" and docker.builds_image
    assert isinstance(process, ProcessRuntime) and process.name == "process" and not process.builds_image
    with pytest.raises(UsageError, match="kubernetes"):
        make_runtime("kubernetes")


@pytest.mark.parametrize("runtime", [DockerRuntime, ProcessRuntime])
def test_each_runtime_implements_every_step_itself(runtime: type[Runtime]) -> None:
    """A step left out would inherit the protocol's stub and quietly return None."""
    assert Runtime in runtime.__mro__
    for step in STEPS:
        assert getattr(runtime, step) is not getattr(Runtime, step), step


def test_the_process_runtime_builds_nothing_and_its_log_is_the_failure_log(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_deployment(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), folder)
    runtime = ProcessRuntime()
    assert runtime.build(load_deployment(folder)) is None
    assert runtime.save_failure_log(folder) is None  # nothing ran: no log
    (folder / LOG_NAME).write_text("boot\nfailed\n")
    assert runtime.save_failure_log(folder) == folder / LOG_NAME
    assert runtime.log_tail(folder, 1) == "failed"


@pytest.mark.parametrize("name", ["up", "doctor", "down", "status", "logs"])
def test_every_command_takes_the_same_runtime_names(name: str) -> None:
    from r4b_deploy.cli.main import cli

    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    (param,) = [p for p in command.params if p.name == "runtime"]
    assert isinstance(param.type, click.Choice) and tuple(param.type.choices) == RUNTIME_NAMES
