"""The whole rehearsal for real, as a user runs it: `r4b-deploy up --rehearsal` builds the image (vLLM's
CPU build from the host wheelhouse, the tiny R-4B model built inside), runs it, waits for health,
smoke-checks the protocol, runs the quick benchmark and writes the report; `up` again with only
--max-num-seqs changed rebuilds nothing; `down` leaves no container, build container or process.

The cold build takes minutes (pip install of ~150 wheels, copying a 2.5 GB venv between stages);
the image and its build cache then stay in the engine's data-root for later runs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fixtures.docker_engine import free_port
from fixtures.nvml import r4b_deploy_command

from r4b_deploy.deployment import LABEL_DIR, read_env_file

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.vllm, pytest.mark.slow]

UP_TIMEOUT_S = 3600  # a cold build on a busy 2-core machine
CLI_TIMEOUT_S = 300
# What only the rehearsal image's build steps and server run (Dockerfile.j2: /opt/venv, /opt/r4b, /wheels).
IMAGE_PATH_MARKERS = ("/opt/venv", "/opt/r4b", "/wheels")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "R4B_DEBUG"}


def _cli(*args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*r4b_deploy_command(), *args], env=_env(), capture_output=True, text=True, timeout=timeout_s)


def _image_containers(client) -> dict[str, str]:
    """Containers (any state) running the rehearsal image's build steps or server: id -> description."""
    found = {}
    for c in client.containers.list(all=True):
        config = c.attrs.get("Config") or {}
        command = " ".join([*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])])
        if any(marker in command for marker in IMAGE_PATH_MARKERS):
            found[c.id] = f"{c.short_id} {c.status}: {command[:80]}"
    return found


def _host_vllm_processes_from_image() -> list[str]:
    """`vllm serve` processes whose executable is the image's venv (they show in the host's /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/opt/venv/bin/vllm" in cmdline:
            out.append(f"{entry.name}: {cmdline[:100]}")
    return out


def _up_json(folder: Path) -> dict:
    return json.loads((folder / "report" / "up.json").read_text())


def test_up_rehearsal_smoke_bench_down(docker_client, docker_base_image: str, tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    port = str(free_port())
    containers_before = set(_image_containers(docker_client))  # ids

    up = _cli("up", "--rehearsal", "--out", str(folder), "--port", port, "--bench", "quick", timeout_s=UP_TIMEOUT_S)
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        key = read_env_file(folder)["VLLM_API_KEY"]
        assert key not in up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout and str(folder / "r4b.env") in up.stdout
        report_dir = folder / "report"
        names = ("plan.json", "smoke.json", "junit.xml", "bench.json", "bench.md", "bench.png", "up.json")
        names += ("report.html",)
        for name in names:
            assert (report_dir / name).is_file(), name
            assert key.encode() not in (report_dir / name).read_bytes(), name
        smoke = json.loads((report_dir / "smoke.json").read_text())
        assert smoke["protocol_only"] is True and smoke["failed"] == 0 and smoke["passed"] > 0
        bench = json.loads((report_dir / "bench.json").read_text())
        assert bench  # the writers' own tests check its shape
        first = _up_json(folder)
        assert first["smoke_ok"] is True and first["bench_error"] is None
        # `up` judges the bench as `bench` does (no failed request by default): requests completed, none failed.
        assert first["bench_summary"] and all(row["completed"] > 0 for row in first["bench_summary"])
        assert all(row["failed"] == 0 for row in first["bench_summary"]) and first["bench_gate_failures"] == []
        print(
            f"\nrehearsal up: healthy after {first['healthy_after_s']:.0f} s; stages {first['timings_s']}; "
            f"build {first['build']}"
        )

        status = json.loads(_cli("status", "--dir", str(folder), "--json").stdout)
        assert status["state"] == "running" and status["healthy"] is True
        # The rehearsal plan's KV prediction beside the container's own vLLM log, in up.json and in status.
        for check in (first["plan_check"], status["plan_check"]):
            assert check["checked"] is True and check["device"] == "CPU" and check["warnings"] == [], check
            kv = [f for f in check["figures"] if f["name"] in ("kv_tokens", "kv_cache_bytes")]
            assert len(kv) == 2 and all(abs(f["drift_pct"]) <= 1.0 for f in kv), kv
        assert (report_dir / "plan-check.md").is_file() and "plan vs vLLM" in up.stdout

        # Only --max-num-seqs changes: the flags are given at run time, the image tag stays.
        again = _cli(
            "up",
            "--rehearsal",
            "--out",
            str(folder),
            "--port",
            port,
            "--bench",
            "none",
            "--max-num-seqs",
            "8",
            timeout_s=UP_TIMEOUT_S,
        )
        assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
        second = _up_json(folder)
        assert second["image_tag"] == first["image_tag"]
        assert second["build"]["built"] is False  # zero rebuilt layers
        (container,) = docker_client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={folder}"})
        assert container.attrs["Args"][container.attrs["Args"].index("--max-num-seqs") + 1] == "8"
        print(f"rehearsal up, warm (image cached, flag changed): healthy after {second['healthy_after_s']:.0f} s")

        # A bench gate that cannot hold fails `up` as it fails `bench`: exit 1, the server stays up.
        gated = _cli(
            "up",
            "--rehearsal",
            "--out",
            str(folder),
            "--port",
            port,
            "--max-num-seqs",
            "8",
            "--bench",
            "quick",
            "--slo",
            "p95_ttft_ms=0",
            timeout_s=UP_TIMEOUT_S,
        )
        assert gated.returncode == 1, f"{gated.stdout}\n{gated.stderr}"
        assert "bench gate: p95_ttft_ms" in gated.stderr and "Traceback" not in gated.stderr
        third = _up_json(folder)
        assert third["bench_gate_failures"] and all(row["completed"] > 0 for row in third["bench_summary"])
        assert json.loads(_cli("status", "--dir", str(folder), "--json").stdout)["state"] == "running"
    finally:
        down = _cli("down", "--dir", str(folder))
    assert down.returncode == 0, down.stderr
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_DIR}={folder}"}) == []
    left = {cid: text for cid, text in _image_containers(docker_client).items() if cid not in containers_before}
    assert left == {}  # no build container left either
    assert _host_vllm_processes_from_image() == []
