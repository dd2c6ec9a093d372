"""run_up over the Runtime protocol, with a runtime that serves the real fake-OpenAI socket server
(tests/fixtures/servers.py) instead of vLLM: the pipeline's order, report folder, state file,
error messages and clean-up on every failure path. The docker runtime for real:
tests/integration/test_docker_*.py and test_up_rehearsal.py."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fixtures.servers import FakeServer, FakeServerConfig

from r4b_deploy.deployment import Deployment, load_deployment, read_env_file
from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch.base import Endpoint, Runtime, RuntimeStatus, StopResult
from r4b_deploy.launch.ports import free_port
from r4b_deploy.launch.state import read_state
from r4b_deploy.pipeline import run_up
from r4b_deploy.pipeline_events import UpEvent
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.render.options import RenderOptions


class FakeServerRuntime(Runtime):
    """A Runtime whose "server" is a FakeServer on 127.0.0.1, keyed with the folder's own API key."""

    name = "process"

    def __init__(self, behaviour: str = "ok", log_lines: int = 80) -> None:
        self.behaviour = behaviour
        self.server: FakeServer | None = None
        self.stops = 0
        self.log = [f"log line {i}" for i in range(log_lines)]

    def build(self, deployment: Deployment, *, force: bool = False) -> None:
        return None

    def start(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint:
        if self.behaviour == "interrupt":
            raise KeyboardInterrupt
        if self.behaviour == "port":
            raise EnvironmentProblem("port 1 on 127.0.0.1 is already in use", fix="choose another --port")
        key = env["VLLM_API_KEY"]
        unhealthy = self.behaviour in ("never_healthy", "dies")
        config = FakeServerConfig(
            api_key=key,
            fault_health=unhealthy,
            behaviour="status" if unhealthy else "ok",
            status_code=503,
        )
        self.server = FakeServer(config).start()
        return Endpoint(url=self.server.url, served_model_name="r4b", api_key_file=deployment.env_file)

    def running_endpoint(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint | None:
        if self.server is None:
            return None
        return Endpoint(url=self.server.url, served_model_name="r4b", api_key_file=deployment.env_file)

    def is_alive(self, deployment_dir: Path) -> bool:
        return self.behaviour != "dies"

    def save_failure_log(self, deployment_dir: Path) -> Path | None:
        return None

    def stop(self, deployment_dir: Path) -> StopResult:
        self.stops += 1
        stopped = self.server is not None
        if self.server is not None:
            self.server.stop()
            self.server = None
        return StopResult(runtime="process", stopped=stopped)

    def status(self, deployment_dir: Path) -> RuntimeStatus:
        return RuntimeStatus(runtime="process", state="running" if self.server else "absent")

    def logs(self, deployment_dir: Path, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        yield from self.log[-tail:] if tail else self.log


@pytest.fixture
def runtime() -> Iterator[FakeServerRuntime]:
    rt = FakeServerRuntime()
    yield rt
    rt.stop(Path("."))


def _up(tmp_path: Path, runtime, bench: str = "none", events: list | None = None, **kwargs):
    return run_up(
        PlanRequest(rehearsal=True),
        RenderOptions(host_port=free_port()),
        tmp_path / "deploy",
        runtime=runtime,
        bench=bench,  # type: ignore[arg-type]
        on_event=events.append if events is not None else None,
        **kwargs,
    )


def test_up_runs_every_stage_and_writes_the_report(tmp_path: Path, runtime: FakeServerRuntime) -> None:
    events: list[UpEvent] = []
    report = _up(tmp_path, runtime, bench="quick", events=events)

    done = [e.stage for e in events if e.kind == "done"]
    assert done == ["plan", "render", "start", "health", "smoke", "bench"]  # no build: this runtime has none
    assert report.smoke_ok is True and report.smoke_failed == 0
    assert report.bench_error is None and len(report.bench_summary) == 2  # quick: two load levels
    folder = tmp_path / "deploy"
    names = ("plan.json", "smoke.json", "junit.xml", "bench.json", "bench.md", "bench.png", "up.json", "report.html")
    for name in names:
        assert (folder / "report" / name).is_file(), name
        assert (folder / "report" / name).stat().st_mode & 0o777 == 0o644, name  # bug 4: one mode, no secret
    assert json.loads((folder / "report" / "plan.json").read_text())["rehearsal"] is True
    # The page people read holds every part: up, smoke, the gates, the bench and the plan.
    page = (folder / "report" / "report.html").read_text()
    assert all(f'<section id="{part}">' in page for part in ("up", "smoke", "gates", "bench", "plan")), page[:300]
    assert "report.html" in report.files
    assert report.api_key_file == folder / "r4b.env"
    assert runtime.stops == 0  # a deployment that came up stays up


def test_the_api_key_reaches_no_report_file(tmp_path: Path, runtime: FakeServerRuntime) -> None:
    report = _up(tmp_path, runtime, bench="quick")
    key = read_env_file(report.deployment_dir)["VLLM_API_KEY"]
    for path in report.report_dir.iterdir():
        assert key.encode() not in path.read_bytes(), path.name
    assert key not in report.model_dump_json()
    assert key not in (report.deployment_dir / "r4b-state.json").read_text()


def test_up_records_the_runtime_before_starting(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _up(tmp_path, FakeServerRuntime("interrupt"))
    state = read_state(tmp_path / "deploy")
    assert state is not None and state.runtime == "process"


def test_interrupt_stops_what_was_started(tmp_path: Path) -> None:
    rt = FakeServerRuntime("interrupt")
    with pytest.raises(KeyboardInterrupt):
        _up(tmp_path, rt)
    assert rt.stops == 1


def test_server_exit_while_starting_gives_the_last_50_log_lines_and_cleans_up(tmp_path: Path) -> None:
    rt = FakeServerRuntime("dies")
    with pytest.raises(LaunchError) as caught:
        _up(tmp_path, rt, health_timeout_s=30)
    error = caught.value
    assert "exited" in error.message
    assert error.details is not None
    lines = error.details.splitlines()
    assert "log line 79" in lines[-1] and "log line 30" in error.details and "log line 29" not in error.details
    assert rt.stops == 1 and rt.server is None


def test_health_timeout_is_a_launch_error_with_the_log_tail(tmp_path: Path) -> None:
    rt = FakeServerRuntime("never_healthy")
    with pytest.raises(LaunchError) as caught:
        _up(tmp_path, rt, health_timeout_s=1.5)
    assert "not healthy after" in caught.value.message
    assert "log line 79" in (caught.value.details or "")
    assert rt.stops == 1


def test_environment_problems_pass_through_unchanged_after_cleanup(tmp_path: Path) -> None:
    rt = FakeServerRuntime("port")
    with pytest.raises(EnvironmentProblem, match="already in use"):
        _up(tmp_path, rt)
    assert rt.stops == 1


def test_health_ticks_carry_the_log_tail(tmp_path: Path) -> None:
    rt = FakeServerRuntime("never_healthy")
    events: list[UpEvent] = []
    with pytest.raises(LaunchError):
        _up(tmp_path, rt, events=events, health_timeout_s=1.5)
    ticks = [e for e in events if e.kind == "tick"]
    assert ticks and "log line 79" in ticks[0].data


def test_smoke_failure_is_reported_not_raised_and_the_server_stays(tmp_path: Path) -> None:
    rt = FakeServerRuntime()
    original_start = rt.start

    def start_with_wrong_name(deployment: Deployment, env: Mapping[str, str]) -> Endpoint:
        endpoint = original_start(deployment, env)
        assert rt.server is not None
        rt.server.config.served_model_name = "another-model"  # the server now serves something else
        return endpoint

    rt.start = start_with_wrong_name  # type: ignore[method-assign]
    try:
        report = _up(tmp_path, rt)
        assert report.smoke_ok is False and report.smoke_failures
        assert not report.ok
        assert rt.stops == 0
    finally:
        rt.stop(tmp_path)


def test_a_failure_after_health_stops_the_server(tmp_path: Path) -> None:
    rt = FakeServerRuntime()

    def vanish_once_healthy(event: UpEvent) -> None:
        if event.stage == "health" and event.kind == "done" and rt.server is not None:
            rt.server.stop()  # the server goes away between health and smoke

    with pytest.raises(EnvironmentProblem):
        run_up(
            PlanRequest(rehearsal=True),
            RenderOptions(host_port=free_port()),
            tmp_path / "deploy",
            runtime=rt,
            bench="none",
            on_event=vanish_once_healthy,
        )
    assert rt.stops == 1


def test_a_requested_interrupt_stops_the_next_wait_tick_even_if_the_first_was_swallowed() -> None:
    """The SIGINT handler sets a flag the long waits re-check: a KeyboardInterrupt that Python
    swallowed inside a destructor still stops `up` at the next health tick or event."""
    from r4b_deploy import pipeline_events as events_module

    events: list[object] = []
    events_module.request_interrupt()
    try:
        with pytest.raises(KeyboardInterrupt):
            events_module.emit(events.append, events_module.UpEvent("health", "tick", elapsed_s=1.0))
        assert events == []
    finally:
        events_module.clear_interrupt()
    events_module.emit(events.append, events_module.UpEvent("health", "tick", elapsed_s=2.0))
    assert len(events) == 1


# ---------------------------------------------------------------- bug 2: up judges the bench as `bench` does


def test_every_measured_request_failing_fails_up_like_bench(tmp_path: Path) -> None:
    """`bench` exits 1 when a request fails (--max-error-rate 0); `up` reported ok (exit 0) for a
    benchmark in which every measured request failed."""
    rt = FakeServerRuntime()

    def fail_once_measuring(event: UpEvent) -> None:
        # Smoke, pre-flight and warm-up pass; every request of the load levels gets a 503.
        if event.stage == "bench" and event.kind == "progress" and event.data.phase == "load" and rt.server:
            rt.server.config.behaviour = "status"
            rt.server.config.status_code = 503

    try:
        report = run_up(
            PlanRequest(rehearsal=True),
            RenderOptions(host_port=free_port()),
            tmp_path / "deploy",
            runtime=rt,
            bench="quick",
            on_event=fail_once_measuring,
        )
        assert report.smoke_ok is True and report.bench_error is None
        assert sum(row["failed"] for row in report.bench_summary) > 0
        assert not report.ok
        assert report.bench_gate_failures and all("error_rate" in line for line in report.bench_gate_failures)
        assert any(p.startswith("bench gate: error_rate") for p in report.problems())
        saved = json.loads((report.report_dir / "up.json").read_text())
        assert saved["bench_gate_failures"] == report.bench_gate_failures
        assert rt.stops == 0  # a failed gate is a report: the server stays up
    finally:
        rt.stop(tmp_path)


def test_an_slo_gate_that_cannot_hold_fails_up_and_one_that_holds_passes(tmp_path: Path) -> None:
    from r4b_deploy.bench.slo import parse_slo

    rt = FakeServerRuntime()
    report = _up(tmp_path, rt, bench="quick", gates=[parse_slo("p95_ttft_ms=0")])
    assert all(row["completed"] > 0 and row["failed"] == 0 for row in report.bench_summary)
    assert not report.ok
    assert report.bench_gate_failures and all("p95_ttft_ms" in line for line in report.bench_gate_failures)
    rt.stop(tmp_path)

    other = FakeServerRuntime()
    try:
        held = _up(tmp_path, other, bench="quick", gates=[parse_slo("completed>=1")])
        assert held.ok and held.bench_gate_failures == []
    finally:
        other.stop(tmp_path)


def test_slo_gates_without_a_benchmark_are_a_usage_error(tmp_path: Path, runtime: FakeServerRuntime) -> None:
    from r4b_deploy.bench.slo import parse_slo
    from r4b_deploy.errors import UsageError

    with pytest.raises(UsageError, match="--bench none"):
        _up(tmp_path, runtime, bench="none", gates=[parse_slo("p95_ttft_ms=500")])
    assert runtime.server is None  # refused before anything started


def test_no_thinking_modes_no_mode_checks(tmp_path: Path, runtime: FakeServerRuntime) -> None:
    # The plan says which modes the model has; Qwen3-VL-4B-Thinking has none of R-4B's.
    request = PlanRequest(gpu="L4", model="qwen3-vl-4b-thinking")
    report = run_up(request, RenderOptions(host_port=free_port()), tmp_path / "deploy", runtime=runtime, bench="none")
    smoke = json.loads((report.report_dir / "smoke.json").read_text())
    skipped = {c["name"]: c["reason"] for c in smoke["checks"] if c["status"] == "skip"}
    assert smoke["modes"] == [] and {"mode_short", "modes_reach_template", "short_is_short"} <= set(skipped)
    assert all("no thinking modes" in reason for reason in skipped.values())
    assert report.smoke_ok is True and report.smoke_failed == 0


def test_a_second_up_of_a_running_deployment_says_it_reused_the_server(tmp_path: Path) -> None:
    from r4b_deploy.pipeline import ALREADY_RUNNING

    rt = FakeServerRuntime()
    try:
        first = _up(tmp_path, rt)
        server = rt.server
        events: list[UpEvent] = []
        second = _up(tmp_path, rt, events=events)
        assert rt.server is server, "a second server was started"
    finally:
        rt.stop(tmp_path)
    assert (first.already_running, second.already_running) == (False, True)
    (start_done,) = [e for e in events if e.stage == "start" and e.kind == "done"]
    assert start_done.message == ALREADY_RUNNING
    report = json.loads((tmp_path / "deploy" / "report" / "up.json").read_text())
    assert report["already_running"] is True


def test_up_waits_a_bounded_time_for_another_up_of_the_folder_then_says_who(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from r4b_deploy.launch import user_state

    monkeypatch.setattr(user_state, "LOCK_WAIT_S", 0.3)
    rt = FakeServerRuntime()
    events: list[UpEvent] = []
    held = user_state.deployment_lock(tmp_path / "deploy", doing="up")
    with held, pytest.raises(EnvironmentProblem, match=r"another r4b-deploy \(pid \d+, r4b-deploy up\)"):
        _up(tmp_path, rt, events=events)
    assert rt.server is None and not (tmp_path / "deploy").exists()  # nothing rendered, nothing started
    assert [e.message for e in events if e.kind == "info" and "waiting up to 0.3 s" in e.message]


def test_ctrl_c_in_an_up_that_reused_a_running_server_leaves_that_server_up(tmp_path: Path) -> None:
    """Clean-up stops only what this `up` started: the server an earlier `up` started keeps serving."""
    rt = FakeServerRuntime()
    try:
        _up(tmp_path, rt)

        def interrupt_at_smoke(event: UpEvent) -> None:
            if event.stage == "smoke" and event.kind == "start":
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_up(
                PlanRequest(rehearsal=True),
                load_deployment(tmp_path / "deploy").options,
                tmp_path / "deploy",
                runtime=rt,
                bench="none",
                on_event=interrupt_at_smoke,
            )
        assert rt.stops == 0 and rt.server is not None
    finally:
        rt.stop(tmp_path)


def test_up_exits_as_bench_does_when_its_gates_only_could_not_decide() -> None:
    """bench exits 6 (inconclusive) when no gate failed but some could not decide; up judges the
    same gates and must not call that a failure (exit 1), nor a pass."""
    from r4b_deploy.pipeline_report import INCONCLUSIVE_PREFIX, UpReport

    base = dict(
        deployment_dir=Path("/d"), report_dir=Path("/d/report"), runtime="process", rehearsal=True,
        profile="rehearsal", url="http://127.0.0.1:1", served_model_name="r4b", api_key_file=Path("/d/r4b.env"),
        smoke_ok=True,
    )  # fmt: skip
    undecided = f"{INCONCLUSIVE_PREFIX}p95_ttft_ms = 6.4 at concurrency 1, interval 4.4..7.8 straddles <= 4.5"
    assert UpReport(**base, bench_gate_failures=[undecided]).only_inconclusive
    failed = "p95_ttft_ms = 9 at concurrency 1 (wanted <= 4.5)"
    assert not UpReport(**base, bench_gate_failures=[undecided, failed]).only_inconclusive
    assert not UpReport(**{**base, "smoke_ok": False}, bench_gate_failures=[undecided]).only_inconclusive
    assert not UpReport(**base).only_inconclusive  # ok: nothing to decide


@pytest.mark.parametrize(
    ("gate_lines", "code"),
    [
        (["inconclusive: p95_ttft_ms = 6.4 at concurrency 1, interval 4.4..7.8 straddles <= 4.5"], 6),
        (["inconclusive: a", "p95_ttft_ms = 9 at concurrency 1 (wanted <= 4.5)"], 1),
    ],
)
def test_the_up_command_exits_6_when_gates_only_could_not_decide(
    gate_lines: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from r4b_deploy import pipeline
    from r4b_deploy.cli.main import main
    from r4b_deploy.errors import ExitCode
    from r4b_deploy.pipeline_report import UpReport

    def fake_run_up(*args, **kwargs) -> UpReport:  # the CLI's verdict is what is tested here
        return UpReport(
            deployment_dir=tmp_path, report_dir=tmp_path / "report", runtime="process", rehearsal=True,
            profile="rehearsal", url="http://127.0.0.1:1", served_model_name="r4b", api_key_file=tmp_path / "r4b.env",
            smoke_ok=True, bench="quick", bench_gate_failures=gate_lines,
        )  # fmt: skip

    monkeypatch.setattr(pipeline, "run_up", fake_run_up)
    assert ExitCode.INCONCLUSIVE == 6
    assert main(["up", "--rehearsal", "--runtime", "process", "--out", str(tmp_path / "d"), "--json"]) == code
