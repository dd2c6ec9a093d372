"""The docker runtime's pure parts, without an engine: container arguments from the rendered spec
(`docker_spec`), error classification, the build-stream tracker (`docker_build`), docker's time
format and states. The engine itself: tests/integration."""

from __future__ import annotations

import socket
from datetime import timezone
from pathlib import Path

import pytest

from r4b_deploy.deployment import LABEL_DIR
from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch import docker_build, docker_spec
from r4b_deploy.launch.ports import port_problem
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions


@pytest.fixture
def gpu_deployment(tmp_path: Path):
    plan = make_plan(PlanRequest(gpu="L4"))
    return write_deployment(plan, RenderOptions(host_port=18500, hf_cache_dir=tmp_path / "hf"), tmp_path / "d")


@pytest.fixture
def rehearsal_deployment(tmp_path: Path):
    plan = make_plan(PlanRequest(rehearsal=True))
    return write_deployment(plan, RenderOptions(host_port=18501, public=True), tmp_path / "r")


def test_run_kwargs_follow_the_rendered_spec(gpu_deployment) -> None:
    spec = gpu_deployment.container
    kwargs = docker_spec.run_kwargs(spec, {"VLLM_API_KEY": "k"}, {docker_spec.LABEL_CONFIG: "abc"})
    assert kwargs["image"] == gpu_deployment.image_tag
    assert kwargs["name"] == gpu_deployment.project_name
    assert kwargs["command"] == spec.command  # flags at run time; ENTRYPOINT is vllm serve
    assert kwargs["ports"] == {"8000/tcp": ("127.0.0.1", 18500)}
    assert kwargs["init"] is True
    assert kwargs["labels"][LABEL_DIR] == str(gpu_deployment.dir)
    assert kwargs["labels"][docker_spec.LABEL_CONFIG] == "abc"
    assert kwargs["shm_size"] == spec.shm_size_bytes
    assert "ipc_mode" not in kwargs
    (request,) = kwargs["device_requests"]
    assert request["Capabilities"] == [["gpu"]]
    if spec.gpu_device_ids:
        assert request["DeviceIDs"] == spec.gpu_device_ids
    else:
        assert request["Count"] == spec.gpu_count >= 1
    assert kwargs["volumes"] == {
        str(gpu_deployment.options.hf_cache_dir): {"bind": "/root/.cache/huggingface", "mode": "rw"}
    }
    assert kwargs["healthcheck"]["start_period"] == spec.health.start_period_s * 1_000_000_000


def test_run_kwargs_never_put_the_key_in_command_or_labels(gpu_deployment) -> None:
    secret = "sk-very-secret-value"
    kwargs = docker_spec.run_kwargs(gpu_deployment.container, {"VLLM_API_KEY": secret}, {})
    assert kwargs["environment"] == {"VLLM_API_KEY": secret}
    assert not any(secret in arg for arg in kwargs["command"])
    assert not any(secret in value for value in kwargs["labels"].values())


def test_rehearsal_requests_no_gpu_and_publishes_publicly_when_asked(rehearsal_deployment) -> None:
    kwargs = docker_spec.run_kwargs(rehearsal_deployment.container, {}, {})
    assert "device_requests" not in kwargs
    assert kwargs["ports"] == {"8000/tcp": ("0.0.0.0", 18501)}
    assert kwargs["shm_size"] >= 256 * 1024**2


def test_ipc_host_replaces_shm_size(tmp_path: Path) -> None:
    plan = make_plan(PlanRequest(rehearsal=True))
    deployment = write_deployment(plan, RenderOptions(ipc_host=True), tmp_path / "ipc")
    kwargs = docker_spec.run_kwargs(deployment.container, {}, {})
    assert kwargs["ipc_mode"] == "host"
    assert "shm_size" not in kwargs


def test_config_digest_changes_with_the_run_configuration_and_the_key(gpu_deployment) -> None:
    spec = gpu_deployment.container
    base = docker_spec.config_digest(spec, {"VLLM_API_KEY": "a"})
    assert base == docker_spec.config_digest(spec, {"VLLM_API_KEY": "a"})
    assert base != docker_spec.config_digest(spec, {"VLLM_API_KEY": "b"})
    other = spec.model_copy(update={"command": [*spec.command, "--max-num-seqs", "3"]})
    assert base != docker_spec.config_digest(other, {"VLLM_API_KEY": "a"})


def test_gpu_request_refused_names_the_container_toolkit(gpu_deployment) -> None:
    error = docker_spec.classify_start_error(
        'could not select device driver "" with capabilities: [[gpu]]', gpu_deployment.container
    )
    assert isinstance(error, EnvironmentProblem)
    assert "nvidia-container-toolkit" in error.fix
    assert "nvidia-ctk runtime configure --runtime=docker" in error.fix
    assert "restart docker" in error.fix


def test_port_clash_from_the_daemon_is_an_environment_problem(gpu_deployment) -> None:
    error = docker_spec.classify_start_error(
        "driver failed programming external connectivity: Bind for 127.0.0.1:18500 failed: port is already allocated",
        gpu_deployment.container,
    )
    assert isinstance(error, EnvironmentProblem)
    assert "18500" in error.message


def test_other_start_failures_are_launch_errors(gpu_deployment) -> None:
    error = docker_spec.classify_start_error("OCI runtime create failed: something odd", gpu_deployment.container)
    assert isinstance(error, LaunchError)
    assert "something odd" in error.message


def test_port_problem_sees_a_real_listener() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        problem = port_problem("127.0.0.1", port)
        assert problem is not None and str(port) in problem.message
    assert port_problem("127.0.0.1", port) is None


# A classic builder's stream, as docker-py decodes it (taken from a real build).
BUILD_STREAM = [
    "Step 1/5 : FROM nvidia/cuda:12.1.1-devel-ubuntu22.04 AS base\n",
    " ---> 78fb17e06337\n",
    "Step 2/5 : ENV A=1\n",
    " ---> Using cache\n",
    " ---> 1a2b3c4d5e6f\n",
    "Step 3/5 : RUN echo building && false\n",
    " ---> Running in b48456688789\n",
    "building\n",
    "Step 4/5 : FROM base\n",
    " ---> 78fb17e06337\n",
    "Step 5/5 : COPY x /x\n",
    " ---> Using cache\n",
]


def test_step_tracker_counts_cached_and_rebuilt_steps() -> None:
    tracker = docker_build.StepTracker()
    lines = [line for chunk in BUILD_STREAM for line in tracker.feed(chunk)]
    assert lines[0].step == 1 and lines[0].steps_total == 5
    assert tracker.cached_steps == {2, 5}
    assert tracker.run_steps == {2, 3, 5}  # FROM lines are not layers
    assert tracker.run_steps - tracker.cached_steps == {3}


def test_build_failure_carries_the_failing_step_and_its_output() -> None:
    tracker = docker_build.StepTracker()
    for chunk in BUILD_STREAM[:8]:
        tracker.feed(chunk)
    error = docker_build.build_failed(tracker, "The command '/bin/sh -c echo building && false' returned 1")
    assert isinstance(error, LaunchError)
    assert "step 3/5" in error.message and "RUN echo building && false" in error.message
    assert "building" in error.details and "returned 1" in error.details


def test_parse_started_at_reads_docker_nanoseconds() -> None:
    parsed = docker_spec.parse_started_at("2025-11-21T17:03:04.123456789Z")
    assert parsed is not None and parsed.tzinfo == timezone.utc
    assert (parsed.second, parsed.microsecond) == (4, 123456)
    assert docker_spec.parse_started_at("0001-01-01T00:00:00Z") is None  # never started
    assert docker_spec.parse_started_at(None) is None


@pytest.mark.parametrize(
    ("state", "restarts", "expected"),
    [
        ({"Status": "created"}, 0, ("created", False)),
        ({"Status": "exited", "ExitCode": 1}, 0, ("exited", False)),
        ({"Status": "restarting"}, 2, ("starting", False)),
        ({"Status": "running", "Health": {"Status": "starting"}}, 0, ("starting", False)),
        ({"Status": "running", "Health": {"Status": "healthy"}}, 0, ("running", True)),
        ({"Status": "running", "Health": {"Status": "unhealthy"}}, 0, ("unhealthy", False)),
        ({"Status": "running"}, 0, ("running", None)),
    ],
)
def test_status_from_inspect(state: dict, restarts: int, expected: tuple) -> None:
    got_state, healthy, detail = docker_spec.status_from_inspect({"State": state, "RestartCount": restarts})
    assert (got_state, healthy) == expected
    assert detail


def test_a_missing_base_image_says_how_to_get_one() -> None:
    tracker = docker_build.StepTracker()
    tracker.feed("Step 1/4 : FROM nvidia/cuda:12.1.1-devel-ubuntu22.04 AS base\n")
    error = docker_build.build_failed(tracker, "pull access denied for nvidia/cuda")
    assert "docker pull nvidia/cuda:12.1.1-devel-ubuntu22.04" in error.fix and "--base-image" in error.fix
