"""The docker runtime against the real engine, with small purpose-built images (FROM the local base)
standing in for vLLM: every failure `up` can meet, each with its message, and nothing left behind."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from fixtures.docker_engine import BUILD_TIMEOUT_S, free_port

from r4b_deploy.deployment import LABEL_DIR, load_deployment, read_env_file
from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch.docker_runtime import DockerRuntime
from r4b_deploy.launch.docker_spec import LABEL_CONFIG, run_kwargs
from r4b_deploy.pipeline import run_up

pytestmark = [pytest.mark.integration, pytest.mark.docker]

HEALTH_TIMEOUT_S = 60.0  # the test server answers in about a second


def _containers(client, folder: Path) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={folder}"})


def _start(runtime: DockerRuntime, folder: Path):
    """The runtime's start as `up` calls it: the loaded folder and its env file's values."""
    return runtime.start(load_deployment(folder), read_env_file(folder))


def _up(d, **kwargs):
    kwargs.setdefault("health_timeout_s", HEALTH_TIMEOUT_S)
    return run_up(d.request, d.options, d.folder, runtime="docker", bench="none", **kwargs)


def test_start_runs_the_folders_container_and_down_removes_it(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    runtime = DockerRuntime()
    endpoint = _start(runtime, d.folder)
    try:
        (container,) = _containers(docker_client, d.deployment.dir)
        attrs = container.attrs
        assert container.name == d.deployment.project_name
        assert attrs["HostConfig"]["Init"] is True
        assert attrs["HostConfig"]["PortBindings"] == {
            "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(d.options.host_port)}]
        }
        assert attrs["HostConfig"]["ShmSize"] == d.deployment.container.shm_size_bytes
        assert not attrs["HostConfig"].get("DeviceRequests")  # the rehearsal asks for no GPU
        key = read_env_file(d.folder)["VLLM_API_KEY"]
        assert f"VLLM_API_KEY={key}" in attrs["Config"]["Env"]  # the key travels as environment only
        assert key not in " ".join(attrs["Args"]) and key not in str(attrs["Config"]["Labels"])
        assert endpoint.url == d.deployment.url
        assert runtime.is_alive(d.folder)
    finally:
        result = runtime.stop(d.folder)
    assert result.stopped and result.removed == [d.deployment.project_name]
    assert _containers(docker_client, d.deployment.dir) == []


def test_gpu_request_refused_names_the_toolkit_and_leaves_nothing(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy", gpu=True)
    with pytest.raises(EnvironmentProblem) as caught:
        _start(DockerRuntime(), d.folder)
    error = caught.value
    assert 'could not select device driver "" with capabilities: [[gpu]]' in error.message
    assert "nvidia-container-toolkit" in error.fix and "nvidia-ctk runtime configure --runtime=docker" in error.fix
    assert _containers(docker_client, d.deployment.dir) == []  # not even a Created one


def test_port_clash_is_an_environment_problem_and_leaves_nothing(docker_client, docker_deployment) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        d = docker_deployment("healthy", port=port)
        with pytest.raises(EnvironmentProblem, match=f"port {port} on 127.0.0.1 is already in use"):
            _up(d)
    assert _containers(docker_client, d.deployment.dir) == []


def test_container_exiting_at_start_gives_its_last_50_lines(docker_client, docker_deployment) -> None:
    d = docker_deployment("exit")
    with pytest.raises(LaunchError) as caught:
        _up(d)
    error = caught.value
    assert "exited" in error.message
    assert "boot line 59" in error.details and "boot line 10" in error.details
    assert "boot line 9\n" not in error.details  # only the last 50 lines: 60 boot lines + 2 before them
    assert _containers(docker_client, d.deployment.dir) == []
    saved = d.folder / "container-failure.log"
    assert "boot line 0" in saved.read_text()  # the whole log stays in the folder


def test_health_timeout_gives_the_log_tail_and_removes_the_container(docker_client, docker_deployment) -> None:
    d = docker_deployment("never")
    with pytest.raises(LaunchError) as caught:
        _up(d, health_timeout_s=3)
    assert "not healthy after 3 s" in caught.value.message
    assert "loading line 59" in caught.value.details
    assert _containers(docker_client, d.deployment.dir) == []


def test_up_twice_keeps_one_container_and_reuses_it(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    try:
        _up(d)
        (first,) = _containers(docker_client, d.deployment.dir)
        _up(d)
        (second,) = _containers(docker_client, d.deployment.dir)
        assert second.id == first.id  # same configuration: the running container is reused
    finally:
        DockerRuntime().stop(d.folder)


def test_two_concurrent_ups_of_one_folder_make_one_container(docker_client, docker_deployment) -> None:
    """Issue 11: unserialized, the second `up` failed on the name or its clean-up removed the first's
    container. The folder lock makes the second wait, then reuse the first's container."""
    from concurrent.futures import ThreadPoolExecutor

    d = docker_deployment("healthy")
    try:
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(lambda _: _up(d), range(2)))
        (container,) = _containers(docker_client, d.deployment.dir)
        assert container.status == "running"
        assert sorted(r.already_running for r in reports) == [False, True]
    finally:
        DockerRuntime().stop(d.folder)
    assert _containers(docker_client, d.deployment.dir) == []


def test_changing_max_num_seqs_replaces_the_container_and_rebuilds_nothing(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy", max_num_seqs=4)
    try:
        first_report = _up(d)
        (first,) = _containers(docker_client, d.deployment.dir)
        changed = d.request.model_copy(update={"max_num_seqs": 8})
        report = run_up(changed, d.options, d.folder, runtime="docker", bench="none", health_timeout_s=HEALTH_TIMEOUT_S)
        (second,) = _containers(docker_client, d.deployment.dir)
        assert second.id != first.id and second.labels[LABEL_CONFIG] != first.labels[LABEL_CONFIG]
        assert second.attrs["Args"][second.attrs["Args"].index("--max-num-seqs") + 1] == "8"
        # Flags are not in the image: same content-addressed tag, nothing built.
        assert report.image_tag == first_report.image_tag
        assert report.build is not None and report.build.built is False
    finally:
        DockerRuntime().stop(d.folder)


def test_down_is_idempotent(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    _up(d)
    runtime = DockerRuntime()
    first = runtime.stop(d.folder)
    second = runtime.stop(d.folder)
    assert first.stopped and first.removed
    assert not second.stopped and second.removed == []


def test_down_removes_a_created_leftover_of_a_half_finished_up(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    # What a crash between create and start leaves: a Created container with the folder's labels.
    spec = d.deployment.container
    docker_client.containers.create(**run_kwargs(spec, {}, {}))
    (leftover,) = _containers(docker_client, d.deployment.dir)
    assert leftover.status == "created"
    assert DockerRuntime().status(d.folder).state == "created"
    result = DockerRuntime().stop(d.folder)
    assert result.removed == [spec.name] and not result.stopped
    assert _containers(docker_client, d.deployment.dir) == []


def test_up_replaces_an_exited_leftover(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    docker_client.containers.create(**run_kwargs(d.deployment.container, {}, {}))
    try:
        _up(d)
        (container,) = _containers(docker_client, d.deployment.dir)
        assert container.status == "running"
    finally:
        DockerRuntime().stop(d.folder)


def test_status_and_logs_of_a_running_deployment(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    _up(d)
    runtime = DockerRuntime()
    try:
        status = runtime.status(d.folder)
        assert status.state == "running" and status.healthy is True
        assert status.url == d.deployment.url and status.uptime_s is not None and status.uptime_s >= 0
        lines = list(runtime.logs(d.folder))
        assert any("api key in environment: True" in line for line in lines)
        assert list(runtime.logs(d.folder, tail=1)) == [lines[-1]]
    finally:
        runtime.stop(d.folder)
    assert runtime.status(d.folder).state == "absent"


def _build_folder(tmp_path: Path, dockerfile: str) -> Path:
    """A deployment folder whose Dockerfile was replaced by hand (the runtime builds what the folder holds)."""
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.planning.planner import make_plan
    from r4b_deploy.render.deployment import write_deployment
    from r4b_deploy.render.options import RenderOptions

    folder = tmp_path / "build"
    options = RenderOptions(host_port=free_port(), base_image=f"r4b-test/base:{uuid.uuid4().hex[:12]}")
    write_deployment(make_plan(PlanRequest(rehearsal=True)), options, folder)
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def test_failing_build_step_carries_its_output_and_leaves_no_build_container(
    docker_client, docker_base_image: str, tmp_path: Path, leftovers
) -> None:
    marker = f"r4b-marker-{uuid.uuid4().hex[:8]}"
    folder = _build_folder(
        tmp_path, f"FROM {docker_base_image}\nRUN echo {marker} step output && echo to-stderr >&2 && exit 3\n"
    )
    with pytest.raises(LaunchError) as caught:
        DockerRuntime(build_timeout_s=BUILD_TIMEOUT_S).build(load_deployment(folder))
    error = caught.value
    assert "failed at step 2/2" in error.message and f"RUN echo {marker}" in error.message
    assert f"{marker} step output" in error.details and "to-stderr" in error.details
    assert "returned a non-zero code: 3" in error.details
    assert leftovers.build_containers(marker) == []


def test_build_is_skipped_when_the_tag_exists(docker_client, docker_base_image: str, tmp_path: Path) -> None:
    folder = _build_folder(tmp_path, f"FROM {docker_base_image}\nRUN echo {uuid.uuid4().hex} > /stamp\n")
    runtime = DockerRuntime()
    try:
        deployment = load_deployment(folder)
        first = runtime.build(deployment)
        again = runtime.build(deployment)
        forced = runtime.build(deployment, force=True)
        assert first.built and first.steps_rebuilt == 1
        assert not again.built and again.image_tag == first.image_tag
        assert forced.built and forced.steps_rebuilt == 0 and forced.steps_cached == 1
    finally:
        docker_client.images.remove(first.image_tag, force=True)


def test_no_engine_is_one_clear_environment_problem(tmp_path: Path, docker_deployment, monkeypatch) -> None:
    d = docker_deployment("healthy")
    # The user's environment, not the library: DOCKER_HOST names a socket with no engine behind it.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EnvironmentProblem) as caught:
        _start(DockerRuntime(), d.folder)
    assert "cannot reach the Docker engine" in caught.value.message
    assert "--runtime process" in caught.value.fix


def test_interrupted_build_leaves_no_build_container(
    docker_client, docker_base_image: str, tmp_path: Path, leftovers
) -> None:
    marker = f"r4b-marker-{uuid.uuid4().hex[:8]}"
    folder = _build_folder(tmp_path, f"FROM {docker_base_image}\nRUN echo {marker} && sleep 120\n")

    def interrupt_once_running(line) -> None:
        if line.text.strip() == marker:  # the step's own output: its container is running
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DockerRuntime().build(load_deployment(folder), on_line=interrupt_once_running)
    assert leftovers.build_containers(marker) == []
