"""`r4b-deploy up` as one library call: plan → render → build → run → health → smoke → bench → report.

Generic over the `Runtime` protocol: the docker runtime adds a build step (it has `build`), the
process runtime has none. The folder is the only state: the runtime is recorded in it before
anything starts, so `down` works after an `up` that stopped halfway (a crash, Ctrl-C).

A launch that fails (build, container exit, health timeout, Ctrl-C) leaves nothing running:
the runtime is stopped and its leftovers removed before the error propagates, with the
server's last log lines in the error. A deployment that came up but failed its smoke check or
benchmark stays up (the report says what failed; `r4b-deploy down` stops it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from r4b_deploy.errors import LaunchError, R4BError
from r4b_deploy.launch.base import Runtime

if TYPE_CHECKING:
    from r4b_deploy.launch.docker_runtime import BuildResult
    from r4b_deploy.planning.plan import Plan, PlanRequest
    from r4b_deploy.render.deployment import Deployment
    from r4b_deploy.render.options import RenderOptions

Stage = Literal["plan", "wheelhouse", "render", "build", "start", "health", "smoke", "bench", "report"]
BenchPreset = Literal["quick", "full", "none"]
RuntimeName = Literal["docker", "process"]

REPORT_DIR_NAME = "report"
PLAN_FILE = "plan.json"
SMOKE_FILE = "smoke.json"
JUNIT_FILE = "junit.xml"
BENCH_JSON_FILE = "bench.json"
BENCH_MD_FILE = "bench.md"
BENCH_CHART_FILE = "chart.png"
UP_FILE = "up.json"
LOG_TAIL_LINES = 50  # server log lines a launch error carries
LIVE_TAIL_LINES = 5  # log lines shown under the health wait's progress display
LIVE_TAIL_EVERY_S = 2.0  # how often the health wait refreshes that tail (each refresh reads the log)

# The benchmark `up` runs. quick: a short look at latency alone and under some load, minutes at
# most; full: the benchmark's own default sweep, capped at the plan's max_num_seqs.
BENCH_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"concurrencies": [1, 4], "requests_per_level": 16, "warmup_requests": 2, "max_tokens": 128},
    "full": {},
}


@dataclass(frozen=True)
class UpEvent:
    """What `run_up` reports as it goes, for a live display. Library code never prints.

    kind: "start"/"done" of a stage (done carries `elapsed_s`), "line" (build output; `data` is a
    BuildLine), "tick" (health wait: `elapsed_s`, `data` the log tail), "progress" (`data` a
    BenchProgress or a smoke CheckResult), "info" (a one-line note in `message`).
    """

    stage: Stage
    kind: Literal["start", "done", "line", "tick", "progress", "info"]
    message: str = ""
    elapsed_s: float | None = None
    data: Any = None


EventCallback = Callable[[UpEvent], None]


@runtime_checkable
class BuildingRuntime(Protocol):
    """A runtime with an image to build before it starts (docker)."""

    def build(self, deployment_dir: Path, on_line: Callable[[Any], None] | None = None) -> BuildResult: ...


class UpReport(BaseModel):
    """What `up` did and where everything is. Never holds the API key: `api_key_file` says where it is."""

    model_config = ConfigDict(frozen=True)

    deployment_dir: Path
    report_dir: Path
    runtime: RuntimeName
    rehearsal: bool
    profile: str
    url: str
    served_model_name: str
    api_key_file: Path
    image_tag: str | None = None
    build: Any = None  # BuildResult for docker; None when the runtime builds nothing
    timings_s: dict[str, float] = {}
    healthy_after_s: float | None = None  # from the start of `up` to /health answering
    smoke_ok: bool | None = None
    smoke_passed: int | None = None
    smoke_failed: int | None = None
    smoke_failures: list[str] = []
    bench: BenchPreset = "none"
    bench_error: str | None = None
    bench_summary: list[dict[str, Any]] = []  # per load level: label, request throughput, output tok/s, TTFT
    files: list[str] = []  # report files written, relative to report_dir
    warnings: list[str] = []

    @property
    def ok(self) -> bool:
        return self.smoke_ok is not False and self.bench_error is None


# Set by the CLI's SIGINT handler. A KeyboardInterrupt that lands inside a destructor (an HTTP
# response closed by the garbage collector, say) is printed and swallowed by Python; the long
# waits re-check this flag so one Ctrl-C always stops `up` and cleans up.
_interrupt_requested = threading.Event()


def request_interrupt() -> None:
    _interrupt_requested.set()


def clear_interrupt() -> None:
    _interrupt_requested.clear()


def _raise_if_interrupted() -> None:
    if _interrupt_requested.is_set():
        raise KeyboardInterrupt


def _emit(on_event: EventCallback | None, event: UpEvent) -> None:
    _raise_if_interrupted()
    if on_event is not None:
        on_event(event)


class _Stages:
    """Times each stage and reports its start and end."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.on_event = on_event
        self.timings_s: dict[str, float] = {}
        self.started = time.monotonic()

    @contextlib.contextmanager
    def stage(self, name: Stage, message: str = ""):  # -> Iterator[None]
        _emit(self.on_event, UpEvent(name, "start", message))
        t0 = time.monotonic()
        yield
        self.timings_s[name] = round(time.monotonic() - t0, 2)
        _emit(self.on_event, UpEvent(name, "done", message, elapsed_s=self.timings_s[name]))

    def since_start_s(self) -> float:
        return round(time.monotonic() - self.started, 2)


def make_runtime(name: RuntimeName, on_event: EventCallback | None = None) -> Runtime:
    """The runtime by name, wired to the event callback (build lines, setup progress)."""
    if name == "docker":
        from r4b_deploy.launch.docker_runtime import DockerRuntime

        return DockerRuntime(on_build_line=lambda line: _emit(on_event, UpEvent("build", "line", data=line)))
    from r4b_deploy.launch.process_runtime import ProcessRuntime

    return ProcessRuntime(on_progress=lambda text: _emit(on_event, UpEvent("start", "info", text)))


def _with_rehearsal_wheelhouse(options: RenderOptions, on_event: EventCallback | None) -> RenderOptions:
    """The docker rehearsal installs vLLM's CPU build offline from a host wheelhouse: $R4B_WHEELHOUSE
    if set (a folder of wheels you already have), else the cached one, downloaded once."""
    import os

    from r4b_deploy.rehearsal.vllm_cpu import WHEELHOUSE_ENV, ensure_wheelhouse
    from r4b_deploy.render.options import RenderOptions

    configured = os.environ.get(WHEELHOUSE_ENV)
    if configured:
        _emit(on_event, UpEvent("wheelhouse", "info", f"using ${WHEELHOUSE_ENV}={configured}"))
        # Validated like --wheelhouse: a folder holding wheels.
        wheelhouse = RenderOptions(wheelhouse=Path(configured)).wheelhouse
    else:
        wheelhouse = ensure_wheelhouse(on_progress=lambda text: _emit(on_event, UpEvent("wheelhouse", "info", text)))
    return options.model_copy(update={"wheelhouse": wheelhouse})


def run_up(
    request: PlanRequest,
    options: RenderOptions,
    out_dir: Path,
    *,
    runtime: RuntimeName | Runtime = "docker",
    bench: BenchPreset = "quick",
    health_timeout_s: float | None = None,
    force: bool = False,
    on_event: EventCallback | None = None,
) -> UpReport:
    """Plan, render, launch, check and measure; returns where everything is.

    Raises the planner's and renderer's errors unchanged, EnvironmentProblem for what the host
    lacks (engine, GPU runtime, free port), LaunchError (build step, exit at start, health
    timeout; the log tail in `details`) and KeyboardInterrupt, always after cleaning up.
    """
    from r4b_deploy.launch.state import write_state
    from r4b_deploy.planning.planner import make_plan
    from r4b_deploy.render.deployment import write_deployment

    stages = _Stages(on_event)
    runtime_obj = make_runtime(runtime, on_event) if isinstance(runtime, str) else runtime
    runtime_name: RuntimeName = runtime_obj.name

    with stages.stage("plan"):
        plan = make_plan(request)
    if plan.rehearsal and runtime_name == "docker" and options.wheelhouse is None:
        with stages.stage("wheelhouse", "vLLM CPU wheels for the image (cached)"):
            options = _with_rehearsal_wheelhouse(options, on_event)
    with stages.stage("render", str(out_dir)):
        deployment = write_deployment(plan, options, out_dir, force=force)
    folder = deployment.dir
    # Recorded before anything starts: `down` must find a half-started deployment.
    write_state(
        folder,
        runtime_name,
        url=deployment.url,
        image_tag=deployment.image_tag if runtime_name == "docker" else None,
        container_name=deployment.container.name if runtime_name == "docker" else None,
    )

    build_result = None
    try:
        if isinstance(runtime_obj, BuildingRuntime):
            with stages.stage("build", deployment.image_tag):
                build_result = runtime_obj.build(folder)
        with stages.stage("start"):
            endpoint = runtime_obj.start(folder)
        timeout_s = health_timeout_s if health_timeout_s is not None else deployment.container.health.start_period_s
        with stages.stage("health", endpoint.url):
            _wait_healthy(runtime_obj, folder, endpoint.url, timeout_s, on_event)
        healthy_after_s = stages.since_start_s()
        _forget_failure_log(folder)
    except KeyboardInterrupt:
        _cleanup(runtime_obj, folder)
        raise
    except LaunchError as exc:
        raise _launch_failure(runtime_obj, folder, exc) from exc
    except BaseException:
        _cleanup(runtime_obj, folder)
        raise

    try:
        return _check_and_report(
            deployment, plan, runtime_name, endpoint, bench, stages, build_result, healthy_after_s, on_event
        )
    except BaseException:
        # Ctrl-C, or smoke/bench could not run at all: `up` failed as a whole; leave nothing running.
        # (Checks that ran and failed are a report, not an exception: the server then stays up.)
        _cleanup(runtime_obj, folder)
        raise


def _wait_healthy(runtime: Runtime, folder: Path, url: str, timeout_s: float, on_event: EventCallback | None) -> float:
    from r4b_deploy.launch.health import wait_healthy

    is_alive = getattr(runtime, "is_alive", None)
    last_tail = {"at": -LIVE_TAIL_EVERY_S, "text": ""}

    def on_tick(elapsed_s: float) -> None:
        _raise_if_interrupted()
        if on_event is None:
            return
        if elapsed_s - last_tail["at"] >= LIVE_TAIL_EVERY_S:
            last_tail["at"] = elapsed_s
            last_tail["text"] = _log_tail(runtime, folder, LIVE_TAIL_LINES)
        on_event(UpEvent("health", "tick", elapsed_s=elapsed_s, data=last_tail["text"]))

    return wait_healthy(
        url,
        timeout_s,
        is_alive=(lambda: is_alive(folder)) if callable(is_alive) else None,
        on_tick=on_tick,
    )


def _log_tail(runtime: Runtime, folder: Path, lines: int) -> str:
    """The server's last lines; never raises (it is only ever extra information)."""
    try:
        return "\n".join(list(runtime.logs(folder, tail=lines))[-lines:])
    except Exception:  # a log we cannot read must not hide the real error
        return ""


def _cleanup(runtime: Runtime, folder: Path) -> None:
    """Stop whatever this `up` started; errors here must not hide the one being raised."""
    with contextlib.suppress(Exception):
        runtime.stop(folder)


def _forget_failure_log(folder: Path) -> None:
    from r4b_deploy.launch.docker_runtime import FAILURE_LOG_NAME

    (folder / FAILURE_LOG_NAME).unlink(missing_ok=True)


def _launch_failure(runtime: Runtime, folder: Path, exc: LaunchError) -> LaunchError:
    """The same failure, with the server's last lines, after saving its log and removing what was started."""
    tail = _log_tail(runtime, folder, LOG_TAIL_LINES)
    saved = None
    save = getattr(runtime, "save_failure_log", None)
    if callable(save):
        with contextlib.suppress(Exception):
            saved = save(folder)
    _cleanup(runtime, folder)
    details = exc.details or (f"last {LOG_TAIL_LINES} lines of the server log:\n{tail}" if tail else None)
    fix = exc.fix
    if saved is not None:
        fix = f"read the full log in {saved} (also `r4b-deploy logs --dir {folder}`) for the first error"
    return LaunchError(exc.message, fix=fix, details=details)


# ---------------------------------------------------------------- smoke, bench, report


def _api_key(folder: Path) -> Any:  # SecretStr | None
    from pydantic import SecretStr

    from r4b_deploy.render.deployment import read_env_file
    from r4b_deploy.render.env import API_KEY_VAR

    key = read_env_file(folder).get(API_KEY_VAR)
    return SecretStr(key) if key else None


def _check_and_report(
    deployment: Deployment,
    plan: Plan,
    runtime_name: RuntimeName,
    endpoint: Any,
    bench: BenchPreset,
    stages: _Stages,
    build_result: BuildResult | None,
    healthy_after_s: float,
    on_event: EventCallback | None,
) -> UpReport:
    from r4b_deploy.checks.junit import write_junit
    from r4b_deploy.checks.report import write_json, write_text_atomic
    from r4b_deploy.checks.smoke import SmokeConfig, run_smoke

    folder = deployment.dir
    report_dir = folder / REPORT_DIR_NAME
    report_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    api_key = _api_key(folder)

    write_text_atomic(report_dir / PLAN_FILE, plan.model_dump_json(indent=2) + "\n")
    files.append(PLAN_FILE)

    with stages.stage("smoke", "protocol checks" if deployment.rehearsal else "protocol and model checks"):
        smoke = run_smoke(
            SmokeConfig(
                url=endpoint.url,
                api_key=api_key,
                served_model_name=endpoint.served_model_name,
                protocol_only=deployment.rehearsal,  # random weights: the protocol, not the answers
            ),
            on_check=lambda check: _emit(on_event, UpEvent("smoke", "progress", check.name, data=check)),
        )
    write_json(smoke, report_dir / SMOKE_FILE)
    write_junit(smoke, report_dir / JUNIT_FILE)
    files += [SMOKE_FILE, JUNIT_FILE]

    bench_error = None
    bench_summary: list[dict[str, Any]] = []
    warnings: list[str] = []
    if bench != "none":
        with stages.stage("bench", f"{bench} benchmark"):
            try:
                bench_report = _run_bench(deployment, endpoint, api_key, bench, on_event)
            except R4BError as exc:
                bench_error = str(exc)
                bench_report = None
        if bench_report is not None:
            files += _write_bench(bench_report, report_dir, warnings)
            bench_summary = _bench_summary(bench_report)
            warnings += list(bench_report.warnings)

    report = UpReport(
        deployment_dir=folder,
        report_dir=report_dir,
        runtime=runtime_name,
        rehearsal=deployment.rehearsal,
        profile=plan.profile,
        url=endpoint.url,
        served_model_name=endpoint.served_model_name,
        api_key_file=deployment.env_file,
        image_tag=deployment.image_tag if runtime_name == "docker" else None,
        build=build_result,
        timings_s=dict(stages.timings_s),
        healthy_after_s=healthy_after_s,
        smoke_ok=smoke.ok,
        smoke_passed=smoke.passed,
        smoke_failed=smoke.failed,
        smoke_failures=[f"{c.name}: {c.reason}" for c in smoke.failures()],
        bench=bench,
        bench_error=bench_error,
        bench_summary=bench_summary,
        files=[*files, UP_FILE],
        warnings=warnings,
    )
    write_text_atomic(report_dir / UP_FILE, report.model_dump_json(indent=2) + "\n")
    return report


def bench_config(deployment: Deployment, url: str, api_key: Any, preset: BenchPreset) -> Any:  # BenchConfig
    """The preset's BenchConfig for this deployment: never more in flight than vLLM's max_num_seqs."""
    from r4b_deploy.bench.runner import BenchConfig

    return BenchConfig(
        base_url=url,
        api_key=api_key,
        model=deployment.served_model_name,
        max_concurrency=deployment.plan.vllm.max_num_seqs,
        **BENCH_PRESETS[preset],
    )


def _run_bench(
    deployment: Deployment, endpoint: Any, api_key: Any, preset: BenchPreset, on_event: EventCallback | None
):
    from r4b_deploy.bench.runner import run_bench

    config = bench_config(deployment, endpoint.url, api_key, preset)
    return run_bench(config, on_progress=lambda p: _emit(on_event, UpEvent("bench", "progress", data=p)))


def _write_bench(report: Any, report_dir: Path, warnings: list[str]) -> list[str]:
    """bench.json, bench.md and chart.png, with the bench package's own writers."""
    from r4b_deploy.bench.writers import write_outputs

    write_outputs(report, json_path=report_dir / BENCH_JSON_FILE, markdown_path=report_dir / BENCH_MD_FILE)
    written = [BENCH_JSON_FILE, BENCH_MD_FILE]
    try:
        write_outputs(report, chart_path=report_dir / BENCH_CHART_FILE)
        written.append(BENCH_CHART_FILE)
    except R4BError as exc:  # matplotlib missing: the figures are in the JSON and Markdown anyway
        warnings.append(f"no {BENCH_CHART_FILE}: {exc}")
    return written


BENCH_SUMMARY_KEYS = ("completed", "failed", "request_throughput", "output_throughput", "mean_ttft_ms", "p95_ttft_ms")


def _bench_summary(report: Any) -> list[dict[str, Any]]:
    """Per level, the few figures `up` prints; the full set is in bench.json."""
    out = []
    for level in report.levels:
        flat = level.metrics.flat()
        out.append({"level": level.label, **{k: flat.get(k) for k in BENCH_SUMMARY_KEYS}})
    return out
