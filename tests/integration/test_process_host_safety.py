"""Issue 11, leaks and races on the host, with the process runtime and a stand-in `vllm` (a python
leader that keeps a child in its process group, as vLLM keeps its engine processes):

- `up` after a crashed server stops the engine processes it left behind;
- two `up`s of one folder at once make one server, and the second says it found it running;
- a record that cannot prove its process (no start time, another command line) never kills;
- a server whose folder was deleted is still stopped by `down` (the user's registry).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fixtures.nvml import r4b_deploy_command
from fixtures.stand_in import HEALTH_TIMEOUT_S, VLLM_HEALTH_TIMEOUT_S, log_value, render_gpu_folder, start, wait_until
from fixtures.vllm_server import free_port, render_rehearsal
from support import require

from r4b_deploy.errors import EnvironmentProblem
from r4b_deploy.launch.health import wait_healthy
from r4b_deploy.launch.process_runtime import LOG_NAME, PIDFILE_NAME, ProcessRuntime
from r4b_deploy.launch.server_process import (
    ServerRecord,
    check_record,
    process_start_ticks,
    read_record,
    record_alive,
    stop_recorded,
)
from r4b_deploy.launch.server_registry import entry_path, registered

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 180.0


def _healthy(runtime: ProcessRuntime, folder: Path) -> ServerRecord:
    endpoint = start(runtime, folder)
    wait_healthy(endpoint.url, HEALTH_TIMEOUT_S, is_alive=lambda: runtime.is_alive(folder))
    assert wait_until(lambda: "stand-in child" in (folder / LOG_NAME).read_text())
    record = read_record(folder / PIDFILE_NAME)
    assert record is not None
    return record


def _gone(pid: int) -> bool:
    """No such process, or a zombie (an orphan waits for the host's init to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*r4b_deploy_command(), *args], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


# ---------------------------------------------------------------- 1. a crashed server's engine


def test_up_after_a_crash_stops_the_engine_processes_the_crashed_server_left(tmp_path: Path, stand_in: Path) -> None:
    folder = render_gpu_folder(tmp_path / "dep", free_port())
    runtime = ProcessRuntime(vllm_bin=stand_in)
    notes: list[str] = []
    runtime.on_progress = notes.append
    crashed = _healthy(runtime, folder)
    engine = int(log_value(folder, "stand-in child:"))
    try:
        os.kill(crashed.pid, signal.SIGKILL)  # the leader dies; its "engine" stays in the group
        assert wait_until(lambda: not record_alive(crashed))
        assert check_record(crashed).verdict == "leftovers"

        restarted = _healthy(runtime, folder)

        assert wait_until(lambda: _gone(engine)), "the crashed server's engine process still runs"
        assert restarted.pid != crashed.pid
        assert any(f"left by pid {crashed.pid}" in note and str(engine) in note for note in notes), notes
    finally:
        result = runtime.stop(folder)
    assert result.stopped and result.removed == [f"pid {restarted.pid}"]
    assert _gone(engine) and not record_alive(restarted)


@pytest.mark.vllm
def test_up_after_a_crash_stops_the_real_engine_core_left_behind(tmp_path: Path) -> None:
    """The case as found: `kill -9` of vLLM's API server leaves EngineCore running (2.2 GB on CPU,
    GPU memory on a GPU host); the next start stops it before starting a new server."""
    from r4b_deploy.rehearsal.vllm_cpu import ensure_tiny_model, ensure_venv

    try:
        ensure_tiny_model(ensure_venv())
    except EnvironmentProblem as exc:
        require(False, f"vLLM's CPU build is not available: {exc}")
    folder = render_rehearsal(tmp_path / "dep", free_port())
    runtime = ProcessRuntime()

    def healthy() -> ServerRecord:
        endpoint = start(runtime, folder)
        wait_healthy(endpoint.url, VLLM_HEALTH_TIMEOUT_S, is_alive=lambda: runtime.is_alive(folder))
        record = read_record(folder / PIDFILE_NAME)
        assert record is not None
        return record

    try:
        crashed = healthy()
        engine = [pid for pid in _group(crashed.pid) if pid != crashed.pid and not _gone(pid)]
        assert engine, "vLLM started no engine process in its group"
        os.kill(crashed.pid, signal.SIGKILL)
        assert wait_until(lambda: not record_alive(crashed))
        assert check_record(crashed).verdict == "leftovers"

        restarted = healthy()

        assert all(_gone(pid) for pid in engine), "the crashed server's engine still runs"
    finally:
        runtime.stop(folder)
    assert not record_alive(restarted) and not [pid for pid in _group(restarted.pid) if not _gone(pid)]


# ---------------------------------------------------------------- 3. no proof, no kill


@pytest.fixture
def stranger() -> subprocess.Popen[bytes]:
    """An unrelated process-group leader, as any long-running program on the host."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _forge(pid_path: Path, pid: int, start_ticks: int | None, command: list[str]) -> ServerRecord:
    record = ServerRecord(
        pid=pid,
        start_ticks=start_ticks,
        started_at=datetime.now(timezone.utc),
        url="http://127.0.0.1:1",
        served_model_name="r4b",
        command=command,
    )
    pid_path.write_text(record.model_dump_json())
    return record


@pytest.mark.parametrize("forgery", ["no start time", "another command"])
def test_a_record_that_cannot_prove_its_process_never_kills_it(
    tmp_path: Path, stranger: subprocess.Popen[bytes], forgery: str
) -> None:
    pid_path = tmp_path / PIDFILE_NAME
    ticks = process_start_ticks(stranger.pid)
    if forgery == "no start time":
        _forge(pid_path, stranger.pid, None, [sys.executable, "-c", "import time; time.sleep(600)"])
    else:
        _forge(pid_path, stranger.pid, ticks, ["/opt/venv/bin/vllm", "serve", "YannQi/R-4B"])

    with pytest.raises(EnvironmentProblem) as info:
        stop_recorded(pid_path, timeout_s=1)
    with pytest.raises(EnvironmentProblem):
        ProcessRuntime().stop(tmp_path)

    assert stranger.poll() is None, "a process the record could not prove was killed"
    assert pid_path.exists(), "the evidence was deleted"
    message = str(info.value)
    assert f"pid {stranger.pid} (" in message and "sleep(600)" in message and "nothing proves" in message
    assert f"kill -TERM -- -{stranger.pid}" in message and str(pid_path) in message
    assert ProcessRuntime().status(tmp_path).state == "exited"
    assert ProcessRuntime().is_alive(tmp_path) is False


def test_an_exiting_server_with_no_command_line_yet_is_still_ours(
    tmp_path: Path, stranger: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed, a process reads an empty command line before it is a zombie: its pid and start
    time still prove it (the race made `up` after a crash refuse once in a few runs)."""
    from r4b_deploy.launch import server_process

    record = _forge(tmp_path / PIDFILE_NAME, stranger.pid, process_start_ticks(stranger.pid), ["vllm", "serve"])
    assert check_record(record).verdict == "unproven"
    monkeypatch.setattr(server_process, "_cmdline", lambda pid: [])
    assert check_record(record).verdict == "ours"


def test_down_and_up_refuse_an_unproven_record_with_exit_2(
    tmp_path: Path, stranger: subprocess.Popen[bytes], stand_in: Path
) -> None:
    folder = render_gpu_folder(tmp_path / "dep", free_port())
    _forge(folder / PIDFILE_NAME, stranger.pid, None, ["vllm", "serve"])

    down = _cli("down", "--dir", str(folder), "--runtime", "process")
    assert down.returncode == 2, down.stdout + down.stderr
    assert "nothing proves" in down.stderr and f"pid {stranger.pid}" in down.stderr
    assert "Traceback" not in down.stderr
    with pytest.raises(EnvironmentProblem, match="nothing proves"):
        start(ProcessRuntime(vllm_bin=stand_in), folder)
    assert stranger.poll() is None
    assert not (folder / LOG_NAME).exists(), "a server was started beside the unproven one"


def test_a_leaderless_group_with_processes_older_than_the_server_is_not_ours(tmp_path: Path) -> None:
    """The server's leftovers started after it; a group holding an older process is someone else's."""
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"],
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: len(_group(leader.pid)) == 2)
        (member,) = [pid for pid in _group(leader.pid) if pid != leader.pid]
        leader.kill()
        leader.wait()
        later_ticks = process_start_ticks(member) + 1  # a "server" that started after the member
        record = _forge(tmp_path / PIDFILE_NAME, leader.pid, later_ticks, ["vllm"])
        check = check_record(record)
        assert check.verdict == "unproven" and check.group == [member]
        with pytest.raises(EnvironmentProblem, match="not provably started by the server"):
            stop_recorded(tmp_path / PIDFILE_NAME, timeout_s=1)
        assert not _gone(member)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)


def _group(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                found.append(int(entry))
    return found


# ---------------------------------------------------------------- 4. a deleted folder


def test_down_stops_a_process_server_whose_folder_was_deleted(tmp_path: Path, stand_in: Path) -> None:
    folder = render_gpu_folder(tmp_path / "dep", free_port())
    record = _healthy(ProcessRuntime(vllm_bin=stand_in), folder)
    engine = int(log_value(folder, "stand-in child:"))
    assert registered(folder) == record
    try:
        shutil.rmtree(folder)

        assert ProcessRuntime().status(folder).state == "running"  # from the registry
        down = _cli("down", "--dir", str(folder))  # no --runtime: the registry says which
    finally:
        if record_alive(record):
            os.killpg(record.pid, signal.SIGKILL)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopped and removed pid {record.pid} (process," in down.stdout
    assert not record_alive(record) and wait_until(lambda: _gone(engine))
    assert registered(folder) is None and not entry_path(folder).exists()
    again = _cli("down", "--dir", str(folder), "--runtime", "process")
    assert again.returncode == 0 and "nothing was running" in again.stdout


def test_up_of_a_folder_rendered_again_finds_its_running_server(tmp_path: Path, stand_in: Path) -> None:
    port = free_port()
    folder = render_gpu_folder(tmp_path / "dep", port)
    runtime = ProcessRuntime(vllm_bin=stand_in)
    record = _healthy(runtime, folder)
    try:
        shutil.rmtree(folder)
        render_gpu_folder(folder, port)
        start(runtime, folder)
        assert read_record(folder / PIDFILE_NAME) == record  # reused, and recorded in the folder again
    finally:
        runtime.stop(folder)
    assert not record_alive(record)


# ---------------------------------------------------------------- 2. two `up`s at once


def test_two_concurrent_ups_make_one_server_and_the_second_says_it_found_it(tmp_path: Path, stand_in: Path) -> None:
    folder = tmp_path / "dep"
    env = {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}
    env["PATH"] = f"{stand_in.parent}{os.pathsep}{env['PATH']}"
    args = [*r4b_deploy_command(), "up", "--gpu", "L4", "--runtime", "process", "--out", str(folder)]
    args += ["--port", str(free_port()), "--bench", "none", "--health-timeout", str(HEALTH_TIMEOUT_S)]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.2)
    procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=CLI_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        down = _cli("down", "--dir", str(folder), env=env)
    stderrs = [err for _, err in outputs]
    for proc, err in zip(procs, stderrs, strict=True):
        # The stand-in answers only /health: smoke fails (exit 1) with the server left up.
        assert proc.returncode == 1 and "Traceback" not in err, err
    assert sum("found the server already running" in err for err in stderrs) == 1, stderrs
    assert not (folder / (LOG_NAME + ".1")).exists(), "a second server was started (the log was rotated)"
    assert down.returncode == 0 and "stopped and removed pid" in down.stdout
