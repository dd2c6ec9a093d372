"""Replicas behind vLLM's router, for real, as a user runs them: `r4b-deploy up --rehearsal --replicas 2`
builds one image (vLLM's CPU build, the tiny R-4B model and vLLM's router), runs two CPU replicas
(each pinned to its own core) and the router on the API port, waits for all of them, smoke-checks
and benchmarks through the router, and reports each replica's share from its own /metrics.

Then a replica is killed mid-benchmark (its container's init process, SIGKILL from the host, as a
crash would): the router fails over, the restart policy brings the replica back, and the router
sends it requests again. `down` leaves no container and no network. What this proves is the
plumbing (compose-equivalent containers, the router's flags, key checks, failover); on two cores two
replicas are no faster than one, so no timing is asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from fixtures.docker_engine import free_port
from fixtures.nvml import r4b_deploy_command

from r4b_deploy.deployment import LABEL_DIR, read_env_file

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.vllm, pytest.mark.slow]

UP_TIMEOUT_S = 3600  # a cold build on a busy 2-core machine
CLI_TIMEOUT_S = 300
REPLICAS = 2
FAILOVER_CONCURRENCY = 4
FAILOVER_REQUESTS = 48
KILL_AFTER_COMPLETED = 6  # requests the failover bench completes before the kill: it is mid-run
BACK_TIMEOUT_S = 300  # the killed replica restarted and healthy again (vLLM CPU loads in ~40-80 s)
POLL_S = 1.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}


def _cli(*args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*r4b_deploy_command(), *args], env=_env(), capture_output=True, text=True, timeout=timeout_s)


def _status(folder: Path) -> dict:
    result = _cli("status", "--dir", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _member(status: dict, service: str) -> dict:
    return next(m for m in status["members"] if m["service"] == service)


def _served(url: str) -> int:
    """vllm:request_success_total of one replica, read as `up` and `status` read it."""
    from r4b_deploy.client.metrics import requests_served

    served = requests_served(url, timeout_s=10)
    assert served is not None, url
    return served


def _chat(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "r4b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return requests.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60).status_code


def test_two_replicas_behind_the_router_with_a_replica_killed_mid_bench(docker_client, tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    port = free_port()
    router_url = f"http://127.0.0.1:{port}"
    up = _cli(
        "up", "--rehearsal", "--replicas", str(REPLICAS), "--out", str(folder), "--port", str(port),
        "--bench", "quick", timeout_s=UP_TIMEOUT_S,
    )  # fmt: skip
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        key = read_env_file(folder)["VLLM_API_KEY"]
        assert key not in up.stdout + up.stderr
        report = json.loads((folder / "report" / "up.json").read_text())
        assert report["url"] == router_url and report["smoke_ok"] is True and report["bench_error"] is None
        assert all(row["completed"] > 0 and row["failed"] == 0 for row in report["bench_summary"])
        # Every replica served part of the bench through the router (round robin), read from its /metrics.
        shares = {r["service"]: r for r in report["replicas"]}
        assert set(shares) == {"replica-0", "replica-1"}
        assert all((r["bench_requests"] or 0) > 0 for r in shares.values()), shares
        print(
            f"\nreplicas up: healthy after {report['healthy_after_s']:.0f} s; stages {report['timings_s']}; "
            f"per-replica bench requests { ({s: r['bench_requests'] for s, r in shares.items()}) }; "
            f"bench {report['bench_summary']}"
        )

        status = _status(folder)
        assert status["state"] == "running" and status["healthy"] is True
        assert [m["service"] for m in status["members"]] == ["replica-0", "replica-1", "router"]
        replica_urls = {}
        for index in range(REPLICAS):
            member = _member(status, f"replica-{index}")
            assert member["state"] == "running" and member["healthy"] is True
            assert member["cpus"] == str(index) and member["gpus"] == []  # its own core
            replica_urls[index] = member["url"]
        assert _member(status, "router")["url"] == router_url

        # The key is the replicas' to check; the router passes the client's header through.
        assert _chat(router_url, key) == 200
        assert _chat(router_url, None) == 401 and _chat(router_url, "wrong") == 401
        assert _chat(replica_urls[0], None) == 401

        for flag in (("--router",), ("--replica", "1")):
            logs = _cli("logs", "--dir", str(folder), "--tail", "5", *flag)
            assert logs.returncode == 0 and logs.stdout.strip(), (flag, logs.stderr)

        _failover(docker_client, folder, router_url, replica_urls, tmp_path)
    finally:
        down = _cli("down", "--dir", str(folder))
    assert down.returncode == 0, down.stderr
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={folder}"}) == []
    assert docker_client.networks.list(filters={"label": f"{LABEL_DIR}={folder}"}) == []


def _failover(docker_client, folder: Path, router_url: str, replica_urls: dict[int, str], tmp_path: Path) -> None:
    """Kill replica 1 while a bench runs through the router: at most its in-flight requests fail."""
    (victim,) = docker_client.containers.list(filters={"label": [f"{LABEL_DIR}={folder}", "io.r4b-deploy.replica=1"]})
    result_file, progress = tmp_path / "failover.json", tmp_path / "failover-progress.log"
    before = sum(_served(u) for u in replica_urls.values())
    bench = subprocess.Popen(
        [
            *r4b_deploy_command(), "bench", "--url", router_url, "--deployment", str(folder),
            "--concurrency", str(FAILOVER_CONCURRENCY), "--requests", str(FAILOVER_REQUESTS), "--warmup", "0",
            "--max-tokens", "64", "--max-error-rate", "1", "--json", str(result_file), "--no-progress",
            "--detailed",
        ],
        env=_env(), stdout=progress.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while sum(_served(u) for u in replica_urls.values()) < before + KILL_AFTER_COMPLETED:
            assert bench.poll() is None and time.monotonic() < deadline, progress.read_text()
            time.sleep(0.2)
        victim.reload()
        os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)  # a crash, not `docker stop`: the policy restarts it
        killed_at = time.monotonic()
        assert bench.wait(timeout=CLI_TIMEOUT_S) in (0, 1), progress.read_text()
    finally:
        if bench.poll() is None:
            bench.kill()
    level = json.loads(result_file.read_text())["levels"][0]
    failed = level["failed"]
    print(
        f"\nfailover: replica-1 killed mid-bench; {level['completed']} completed, {failed} failed of "
        f"{FAILOVER_REQUESTS} at concurrency {FAILOVER_CONCURRENCY}"
    )
    assert level["completed"] > 0
    assert failed <= FAILOVER_CONCURRENCY  # at most what was in flight on it when it died

    # The restart policy brings it back; status shows the restart, then health; the router uses it again.
    deadline = time.monotonic() + BACK_TIMEOUT_S
    while True:
        member = _member(_status(folder), "replica-1")
        if member["restarts"] >= 1 and member["healthy"] is True:
            break
        assert time.monotonic() < deadline, member
        time.sleep(POLL_S)
    print(f"failover: replica-1 healthy again {time.monotonic() - killed_at:.0f} s after the kill")
    key = read_env_file(folder)["VLLM_API_KEY"]
    deadline = time.monotonic() + BACK_TIMEOUT_S
    while _served(replica_urls[1]) == 0:  # its counter started again at 0 with the new process
        assert time.monotonic() < deadline, "the router never sent the restarted replica a request"
        assert _chat(router_url, key) == 200
        time.sleep(POLL_S)
