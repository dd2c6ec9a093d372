"""`up` with replicas, the parts that need no container: the process runtime's refusal before
anything is written, each replica's request count read from its /metrics into the report (and
unknown, never a failure, where it cannot be read), the summary line and the report page."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from r4b_deploy.deployment import MANIFEST_NAME, Deployment
from r4b_deploy.errors import UsageError
from r4b_deploy.launch.ports import free_port
from r4b_deploy.launch.process_runtime import ProcessRuntime
from r4b_deploy.pipeline import run_up
from r4b_deploy.pipeline_checks import _replicas_served, _requests_per_replica
from r4b_deploy.pipeline_report import ReplicaServed, UpReport
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions


def test_the_process_runtime_refuses_replicas_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import r4b_deploy.planning.planner as planner

    real = planner.make_plan
    monkeypatch.setattr(planner, "make_plan", lambda request: real(request).model_copy(update={"replica_count": 2}))
    with pytest.raises(UsageError) as caught:
        run_up(PlanRequest(rehearsal=True, replicas=2), RenderOptions(), tmp_path / "deploy", runtime=ProcessRuntime())
    assert "2 replicas need the docker runtime" in caught.value.message
    assert caught.value.fix == "use --runtime docker, or --replicas 1"
    assert not (tmp_path / "deploy" / MANIFEST_NAME).exists()  # refused before render


class _Counter(BaseHTTPRequestHandler):
    """A replica's /metrics: `served` requests, as vLLM's counter writes them."""

    served = 0

    def do_GET(self) -> None:
        body = (
            "# TYPE vllm:request_success_total counter\n"
            f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="r4b"}} {self.served}.0\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def replica_server() -> Iterator[ThreadingHTTPServer]:
    handler = type("_OneReplica", (_Counter,), {"served": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _deployment(tmp_path: Path, ports: list[int], router: bool = True) -> Deployment:
    """A rendered deployment made one with a replica per port behind a router."""
    rendered = write_deployment(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), tmp_path / "deploy")
    engine = rendered.container
    replicas = [
        engine.model_copy(update={"service": f"replica-{i}", "replica_index": i, "host_port": port})
        for i, port in enumerate(ports)
    ]
    router_spec = engine.model_copy(update={"role": "router", "service": "router"}) if router else None
    return rendered.model_copy(update={"replicas": replicas, "router": router_spec})


def test_each_replica_reports_what_it_served_and_its_share_of_the_bench(
    tmp_path: Path, replica_server: ThreadingHTTPServer
) -> None:
    port = replica_server.server_address[1]
    dead_port = free_port()
    deployment = _deployment(tmp_path, [port, dead_port])
    replica_server.RequestHandlerClass.served = 5  # type: ignore[attr-defined]  # smoke's requests
    before = _requests_per_replica(deployment)
    assert before == {"replica-0": 5, "replica-1": None}
    replica_server.RequestHandlerClass.served = 21  # type: ignore[attr-defined]  # after the bench
    served = _replicas_served(deployment, before)
    assert served == [
        ReplicaServed(service="replica-0", url=f"http://127.0.0.1:{port}", requests_served=21, bench_requests=16),
        ReplicaServed(service="replica-1", url=f"http://127.0.0.1:{dead_port}"),  # unknown, not an error
    ]


def test_a_replica_restarted_during_the_bench_has_no_bench_share(
    tmp_path: Path, replica_server: ThreadingHTTPServer
) -> None:
    deployment = _deployment(tmp_path, [replica_server.server_address[1]])
    replica_server.RequestHandlerClass.served = 3  # type: ignore[attr-defined]  # its counter starts again at 0
    served = _replicas_served(deployment, {"replica-0": 10})
    assert served[0].requests_served == 3 and served[0].bench_requests is None


def test_one_engine_reports_no_replicas(tmp_path: Path) -> None:
    deployment = _deployment(tmp_path, [free_port()], router=False)
    assert _requests_per_replica(deployment) == {}
    assert _replicas_served(deployment, {}) == []


def _report(tmp_path: Path, replicas: list[ReplicaServed]) -> UpReport:
    return UpReport(
        deployment_dir=tmp_path,
        report_dir=tmp_path / "report",
        runtime="docker",
        rehearsal=True,
        profile="rehearsal",
        url="http://127.0.0.1:8000",
        served_model_name="r4b",
        api_key_file=tmp_path / "r4b.env",
        smoke_ok=True,
        smoke_passed=3,
        smoke_failed=0,
        replicas=replicas,
    )


REPLICAS = [
    ReplicaServed(service="replica-0", url="http://127.0.0.1:8001", requests_served=21, bench_requests=16),
    ReplicaServed(service="replica-1", url="http://127.0.0.1:8002"),
]


def test_the_summary_has_one_replicas_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from r4b_deploy.cli.up import _print_summary

    _print_summary(_report(tmp_path, REPLICAS))
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "replicas:" in line]
    assert lines == ["replicas: replica-0 21 requests (16 in the bench), replica-1 unknown"]


def test_up_json_and_the_page_carry_the_replicas(tmp_path: Path) -> None:
    import json

    from r4b_deploy.pipeline_report import write_up

    report = _report(tmp_path, REPLICAS)
    report.report_dir.mkdir()
    write_up(report)
    up = json.loads((report.report_dir / "up.json").read_text())
    assert [r["requests_served"] for r in up["replicas"]] == [21, None]
    page = (report.report_dir / "report.html").read_text()
    assert "requests per replica" in page and "replica-1" in page
    without = _report(tmp_path, [])
    write_up(without)
    assert "requests per replica" not in (report.report_dir / "report.html").read_text()


def test_the_full_bench_may_fill_every_replica_not_just_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from r4b_deploy.pipeline_checks import bench_config
    from r4b_deploy.planning import rehearsal

    monkeypatch.setattr(rehearsal, "available_cpu_cores", lambda: 2)
    plan = make_plan(PlanRequest(rehearsal=True, replicas=2))
    deployment = write_deployment(plan, RenderOptions(), tmp_path / "deploy", environ={})
    config = bench_config(deployment, deployment.url, None, "full")
    assert config.max_concurrency == 2 * plan.vllm.max_num_seqs
