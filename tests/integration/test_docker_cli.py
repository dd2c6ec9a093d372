"""`r4b-deploy up / status / logs / down` as a user runs them (subprocesses), on the real engine with
small stand-in images: exit codes, one-line errors, Ctrl-C and SIGTERM, a folder reached through a
symbolic link, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fixtures.nvml import r4b_deploy_command

from r4b_deploy.deployment import LABEL_DIR, read_env_file
from r4b_deploy.launch.docker_spec import run_kwargs

pytestmark = [pytest.mark.integration, pytest.mark.docker]

CLI_TIMEOUT_S = 300
INTERRUPT_WAIT_S = 120


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}
    env.update(extra)
    return env


def _up_args(d, *extra: str, out: Path | None = None) -> list[str]:
    """The same folder options the fixture rendered with: `up` re-renders identical bytes, same tag."""
    args = [*r4b_deploy_command(), "up", "--out", str(out or d.folder), "--bench", "none"]
    args += ["--port", str(d.options.host_port), "--base-image", d.options.base_image]
    args += ["--wheelhouse", str(d.options.wheelhouse), "--hf-cache", str(d.options.hf_cache_dir)]
    if d.request.rehearsal:
        args.append("--rehearsal")
    else:
        args += ["--gpu", d.request.gpu]
    return [*args, *extra]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=_env(**env), capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _run([*r4b_deploy_command(), *args])


def _containers(client, folder: Path) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={folder}"})


def test_up_status_logs_down(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    up = _run(_up_args(d, "--health-timeout", "60"))
    try:
        key = read_env_file(d.folder)["VLLM_API_KEY"]
        assert key not in up.stdout + up.stderr
        # The stand-in answers /health but is no OpenAI server: the smoke check fails, the server stays up.
        assert up.returncode == 1, up.stderr
        assert "the endpoint is up, but" in up.stderr and "r4b-deploy down --dir" in up.stderr
        assert d.deployment.url in up.stdout and str(d.folder / "r4b.env") in up.stdout
        report_dir = d.folder / "report"
        assert {"plan.json", "smoke.json", "junit.xml", "up.json"} <= {p.name for p in report_dir.iterdir()}

        status = _cli("status", "--dir", str(d.folder), "--json")
        assert status.returncode == 0, status.stderr
        parsed = json.loads(status.stdout)
        assert parsed["runtime"] == "docker" and parsed["state"] == "running" and parsed["healthy"] is True
        assert parsed["url"] == d.deployment.url

        logs = _cli("logs", "--dir", str(d.folder), "--tail", "2")
        assert logs.returncode == 0 and logs.stdout.splitlines()[-1] == "listening on 8000"
    finally:
        down = _cli("down", "--dir", str(d.folder))
    assert down.returncode == 0 and "stopped and removed" in down.stdout
    again = _cli("down", "--dir", str(d.folder))
    assert again.returncode == 0 and "nothing was running" in again.stdout
    assert _containers(docker_client, d.deployment.dir) == []
    gone = json.loads(_cli("status", "--dir", str(d.folder), "--json").stdout)
    assert gone["state"] == "absent"


def _default_signals() -> None:
    """In the child, before exec: SIGINT and SIGTERM as a terminal or a CI runner delivers them,
    whatever this test run inherited. A background job of a non-interactive shell (and some CI
    runners) starts with SIGINT ignored, and `up` rightly leaves an inherited SIG_IGN alone."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_up_once_running(docker_client, d, sig: signal.Signals) -> tuple[int, str]:
    """Start `up` on a server that never gets healthy, send `sig` once its container runs: (exit code, stderr)."""
    proc = subprocess.Popen(
        _up_args(d, "--health-timeout", "300"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    try:
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        while time.monotonic() < deadline and not any(
            c.status == "running" for c in _containers(docker_client, d.deployment.dir)
        ):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=INTERRUPT_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr


def test_ctrl_c_during_up_removes_the_container_and_exits_130(docker_client, docker_deployment) -> None:
    d = docker_deployment("never")
    returncode, stderr = _signal_up_once_running(docker_client, d, signal.SIGINT)
    assert returncode == 130, stderr
    assert "Traceback" not in stderr
    assert _containers(docker_client, d.deployment.dir) == []


def test_sigterm_during_up_cleans_up_like_ctrl_c_and_exits_143(docker_client, docker_deployment) -> None:
    """A cancelled CI job or a service manager stops `up` with SIGTERM: nothing may be left running."""
    d = docker_deployment("never")
    returncode, stderr = _signal_up_once_running(docker_client, d, signal.SIGTERM)
    assert returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert _containers(docker_client, d.deployment.dir) == []


def test_a_folder_reached_through_a_symlink_is_one_deployment(docker_client, docker_deployment, tmp_path: Path) -> None:
    """Bug: `up --out link/deploy` labelled its container with the unresolved path while status,
    logs and down looked for the resolved one: status said absent, down "nothing was running"
    (exit 0) and the container kept running."""
    d = docker_deployment("healthy")
    link = tmp_path / "link"
    link.symlink_to(d.folder.parent, target_is_directory=True)
    via_link = link / d.folder.name
    up = _run(_up_args(d, "--health-timeout", "60", out=via_link))
    try:
        # The stand-in answers /health but is no OpenAI server: the smoke check fails, the server stays up.
        assert up.returncode == 1, up.stderr
        assert "the endpoint is up, but" in up.stderr
        (container,) = _containers(docker_client, d.deployment.dir)
        assert container.name == d.deployment.project_name
        for name in (via_link, d.folder):
            status = _cli("status", "--dir", str(name), "--json")
            parsed = json.loads(status.stdout)
            assert parsed["state"] == "running" and parsed["healthy"] is True, (name, parsed)
            logs = _cli("logs", "--dir", str(name), "--tail", "1")
            assert logs.returncode == 0 and logs.stdout.splitlines()[-1] == "listening on 8000", (name, logs)
    finally:
        down = _cli("down", "--dir", str(via_link))
        stray = [c for c in docker_client.containers.list(all=True) if c.labels.get(LABEL_DIR) == str(via_link)]
        for c in stray:  # what the bug left: a container labelled with the link's path
            c.remove(force=True)
    assert down.returncode == 0 and "stopped and removed" in down.stdout, down.stdout
    assert stray == []
    assert _containers(docker_client, d.deployment.dir) == []


def test_gpu_refused_is_one_line_with_exit_2(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy", gpu=True)
    up = _run(_up_args(d))
    assert up.returncode == 2, up.stderr
    assert "Traceback" not in up.stderr
    assert 'could not select device driver "" with capabilities: [[gpu]]' in up.stderr
    assert "nvidia-ctk runtime configure --runtime=docker" in up.stderr
    assert _containers(docker_client, d.deployment.dir) == []


def test_container_exit_is_exit_5_with_its_last_lines(docker_client, docker_deployment) -> None:
    d = docker_deployment("exit")
    up = _run(_up_args(d, "--health-timeout", "60"))
    assert up.returncode == 5, up.stderr
    assert "boot line 59" in up.stderr and "Traceback" not in up.stderr
    assert _containers(docker_client, d.deployment.dir) == []
    logs = _cli("logs", "--dir", str(d.folder), "--tail", "1")  # the saved log of the failed start
    assert logs.stdout.strip() == "boot line 59"


def test_no_engine_is_exit_2_and_names_the_ways_out(docker_deployment, tmp_path: Path) -> None:
    d = docker_deployment("healthy")
    up = _run(_up_args(d), DOCKER_HOST=f"unix://{tmp_path}/nothing.sock")
    assert up.returncode == 2
    assert "cannot reach the Docker engine" in up.stderr and "--runtime process" in up.stderr
    assert "Traceback" not in up.stderr


def test_down_after_a_half_finished_up(docker_client, docker_deployment) -> None:
    d = docker_deployment("healthy")
    # The state `up` records first, and the Created container a crash between create and start leaves.
    from r4b_deploy.launch.state import write_state

    write_state(d.folder, "docker")
    docker_client.containers.create(**run_kwargs(d.deployment.container, {}, {}))
    down = _cli("down", "--dir", str(d.folder))
    assert down.returncode == 0 and f"removed {d.deployment.project_name}" in down.stdout
    assert _containers(docker_client, d.deployment.dir) == []
