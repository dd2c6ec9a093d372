"""`r4b-deploy up` as one library call: plan → render → build → run → health → smoke → bench → report.

Generic over the `Runtime` protocol (`launch/base.py`): every runtime builds (the process
runtime's build does nothing, and `up` shows no build stage for it), starts, waits, and on
failure saves its log and stops. The folder is the only state: the runtime is recorded in it
before anything starts, so `down` works after an `up` that stopped halfway (a crash, Ctrl-C).

A launch that fails (build, container exit, health timeout, Ctrl-C, SIGTERM) leaves nothing
running: the runtime is stopped and its leftovers removed before the error propagates, with
the server's last log lines in the error. A deployment that came up but failed its smoke check
or a bench gate stays up (the report says what failed; `r4b-deploy down` stops it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from r4b_deploy.errors import LaunchError, R4BError, UsageError
from r4b_deploy.launch.base import Endpoint, Runtime, RuntimeName, make_runtime
from r4b_deploy.pipeline_report import (
    UP_FILE,
    BenchPreset,
    UpReport,
    bench_summary,
    gate_failures,
    report_dir_of,
    write_bench,
    write_plan,
    write_smoke,
    write_up,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from r4b_deploy.bench.report import BenchReport
    from r4b_deploy.bench.runner import BenchConfig, BenchProgress
    from r4b_deploy.bench.slo import SloGate
    from r4b_deploy.checks.smoke import CheckResult
    from r4b_deploy.deployment import Deployment
    from r4b_deploy.launch.base import BuildLine, BuildResult
    from r4b_deploy.planning.plan import Plan, PlanRequest
    from r4b_deploy.render.options import RenderOptions

__all__ = ["BenchPreset", "UpEvent", "UpReport", "clear_interrupt", "request_interrupt", "run_up"]

Stage = Literal["plan", "wheelhouse", "render", "build", "start", "health", "smoke", "bench", "report"]

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
    data: BuildLine | BenchProgress | CheckResult | str | None = None


EventCallback = Callable[[UpEvent], None]


# Set by the CLI's SIGINT/SIGTERM handler. A KeyboardInterrupt that lands inside a destructor (an
# HTTP response closed by the garbage collector, say) is printed and swallowed by Python; the long
# waits re-check this flag so one Ctrl-C always stops `up` and cleans up.
_interrupt_requested = threading.Event()
_interrupt_kind: list[type[KeyboardInterrupt]] = [KeyboardInterrupt]  # Terminated for SIGTERM


def request_interrupt(kind: type[KeyboardInterrupt] = KeyboardInterrupt) -> None:
    _interrupt_kind[0] = kind
    _interrupt_requested.set()


def clear_interrupt() -> None:
    _interrupt_requested.clear()
    _interrupt_kind[0] = KeyboardInterrupt


def _raise_if_interrupted() -> None:
    if _interrupt_requested.is_set():
        raise _interrupt_kind[0]


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
    def stage(self, name: Stage, message: str = "") -> Iterator[None]:
        _emit(self.on_event, UpEvent(name, "start", message))
        t0 = time.monotonic()
        yield
        self.timings_s[name] = round(time.monotonic() - t0, 2)
        _emit(self.on_event, UpEvent(name, "done", message, elapsed_s=self.timings_s[name]))

    def since_start_s(self) -> float:
        return round(time.monotonic() - self.started, 2)


def _runtime_reporting_to(name: RuntimeName, on_event: EventCallback | None) -> Runtime:
    """The runtime by name, its build lines and set-up notes turned into UpEvents."""
    return make_runtime(
        name,
        on_build_line=lambda line: _emit(on_event, UpEvent("build", "line", data=line)),
        on_progress=lambda text: _emit(on_event, UpEvent("start", "info", text)),
    )


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
    gates: Sequence[SloGate] = (),
    max_error_rate: float = 0.0,
    health_timeout_s: float | None = None,
    force: bool = False,
    on_event: EventCallback | None = None,
) -> UpReport:
    """Plan, render, launch, check and measure; returns where everything is.

    The bench is judged as `r4b-deploy bench` judges it (`bench/slo.py`): `gates` (--slo) at
    every level, and at most `max_error_rate` failed requests per level (default 0).
    Raises the planner's and renderer's errors unchanged, EnvironmentProblem for what the host
    lacks (engine, GPU runtime, free port), LaunchError (build step, exit at start, health
    timeout; the log tail in `details`) and KeyboardInterrupt, always after cleaning up.
    """
    from r4b_deploy.deployment import read_env_file
    from r4b_deploy.launch.state import write_state
    from r4b_deploy.planning.planner import make_plan
    from r4b_deploy.render.deployment import write_deployment

    if gates and bench == "none":
        raise UsageError(
            "--slo gates a benchmark, and --bench none runs none", fix="drop --slo or choose --bench quick"
        )
    stages = _Stages(on_event)
    runtime_obj = _runtime_reporting_to(runtime, on_event) if isinstance(runtime, str) else runtime

    with stages.stage("plan"):
        plan = make_plan(request)
    if plan.rehearsal and runtime_obj.builds_image and options.wheelhouse is None:
        with stages.stage("wheelhouse", "vLLM CPU wheels for the image (cached)"):
            options = _with_rehearsal_wheelhouse(options, on_event)
    with stages.stage("render", str(out_dir)):
        deployment = write_deployment(plan, options, out_dir, force=force)
    folder = deployment.dir
    env = read_env_file(folder)  # read once: the runtime passes it on, the checks take the key from it
    # Recorded before anything starts: `down` must find a half-started deployment.
    write_state(
        folder,
        runtime_obj.name,
        url=deployment.url,
        image_tag=deployment.image_tag if runtime_obj.builds_image else None,
        container_name=deployment.container.name if runtime_obj.builds_image else None,
    )

    build_result = None
    try:
        if runtime_obj.builds_image:
            with stages.stage("build", deployment.image_tag):
                build_result = runtime_obj.build(deployment)
        with stages.stage("start"):
            endpoint = runtime_obj.start(deployment, env)
        timeout_s = health_timeout_s if health_timeout_s is not None else deployment.container.health.start_period_s
        with stages.stage("health", endpoint.url):
            _wait_healthy(runtime_obj, folder, endpoint, timeout_s, on_event)
        healthy_after_s = stages.since_start_s()
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
            deployment,
            plan,
            runtime_obj.name,
            endpoint,
            _api_key(env),
            _Bench(bench, gates, max_error_rate),
            stages,
            build_result,
            healthy_after_s,
            on_event,
        )
    except BaseException:
        # Ctrl-C, or smoke/bench could not run at all: `up` failed as a whole; leave nothing running.
        # (Checks that ran and failed are a report, not an exception: the server then stays up.)
        _cleanup(runtime_obj, folder)
        raise


def _wait_healthy(
    runtime: Runtime, folder: Path, endpoint: Endpoint, timeout_s: float, on_event: EventCallback | None
) -> float:
    last_tail = {"at": -LIVE_TAIL_EVERY_S, "text": ""}

    def on_tick(elapsed_s: float) -> None:
        _raise_if_interrupted()
        if on_event is None:
            return
        if elapsed_s - float(last_tail["at"]) >= LIVE_TAIL_EVERY_S:
            last_tail["at"] = elapsed_s
            last_tail["text"] = _log_tail(runtime, folder, LIVE_TAIL_LINES)
        on_event(UpEvent("health", "tick", elapsed_s=elapsed_s, data=str(last_tail["text"])))

    return runtime.wait(folder, endpoint, timeout_s, on_tick)


def _log_tail(runtime: Runtime, folder: Path, lines: int) -> str:
    """The server's last lines; never raises (it is only ever extra information)."""
    try:
        return runtime.log_tail(folder, lines)
    except Exception:  # a log we cannot read must not hide the real error
        return ""


def _cleanup(runtime: Runtime, folder: Path) -> None:
    """Stop whatever this `up` started; errors here must not hide the one being raised."""
    with contextlib.suppress(Exception):
        runtime.stop(folder)


def _launch_failure(runtime: Runtime, folder: Path, exc: LaunchError) -> LaunchError:
    """The same failure, with the server's last lines, after saving its log and removing what was started."""
    tail = _log_tail(runtime, folder, LOG_TAIL_LINES)
    saved = None
    with contextlib.suppress(Exception):
        saved = runtime.save_failure_log(folder)
    _cleanup(runtime, folder)
    details = exc.details or (f"last {LOG_TAIL_LINES} lines of the server log:\n{tail}" if tail else None)
    fix = exc.fix
    if saved is not None:
        fix = f"read the full log in {saved} (also `r4b-deploy logs --dir {folder}`) for the first error"
    return LaunchError(exc.message, fix=fix, details=details)


# ---------------------------------------------------------------- smoke, bench, report


@dataclass(frozen=True)
class _Bench:
    """Which benchmark `up` runs and the gates it must hold."""

    preset: BenchPreset
    gates: Sequence[SloGate]
    max_error_rate: float


def _api_key(env: Mapping[str, str]) -> SecretStr | None:
    from pydantic import SecretStr

    from r4b_deploy.render.env import API_KEY_VAR

    key = env.get(API_KEY_VAR)
    return SecretStr(key) if key else None


def _check_and_report(
    deployment: Deployment,
    plan: Plan,
    runtime_name: RuntimeName,
    endpoint: Endpoint,
    api_key: SecretStr | None,
    bench: _Bench,
    stages: _Stages,
    build_result: BuildResult | None,
    healthy_after_s: float,
    on_event: EventCallback | None,
) -> UpReport:
    from r4b_deploy.checks.smoke import SmokeConfig, run_smoke

    report_dir = report_dir_of(deployment.dir)
    files = [write_plan(plan, report_dir)]

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
    files += write_smoke(smoke, report_dir)

    bench_error = None
    summary: list[dict[str, Any]] = []
    failed_gates: list[str] = []
    warnings: list[str] = []
    if bench.preset != "none":
        with stages.stage("bench", f"{bench.preset} benchmark"):
            try:
                bench_report = _run_bench(deployment, endpoint, api_key, bench, on_event)
            except R4BError as exc:
                bench_error = str(exc)
                bench_report = None
        if bench_report is not None:
            files += write_bench(bench_report, report_dir, warnings)
            summary = bench_summary(bench_report)
            failed_gates = gate_failures(bench_report.slo)
            warnings += list(bench_report.warnings)

    report = UpReport(
        deployment_dir=deployment.dir,
        report_dir=report_dir,
        runtime=runtime_name,
        rehearsal=deployment.rehearsal,
        profile=plan.profile,
        url=endpoint.url,
        served_model_name=endpoint.served_model_name,
        api_key_file=deployment.env_file,
        image_tag=deployment.image_tag if build_result is not None else None,
        build=build_result,
        timings_s=dict(stages.timings_s),
        healthy_after_s=healthy_after_s,
        smoke_ok=smoke.ok,
        smoke_passed=smoke.passed,
        smoke_failed=smoke.failed,
        smoke_failures=[f"{c.name}: {c.reason}" for c in smoke.failures()],
        bench=bench.preset,
        bench_error=bench_error,
        bench_gate_failures=failed_gates,
        bench_summary=summary,
        files=[*files, UP_FILE],
        warnings=warnings,
    )
    write_up(report)
    return report


def bench_config(deployment: Deployment, url: str, api_key: SecretStr | None, preset: BenchPreset) -> BenchConfig:
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
    deployment: Deployment,
    endpoint: Endpoint,
    api_key: SecretStr | None,
    bench: _Bench,
    on_event: EventCallback | None,
) -> BenchReport:
    """The benchmark, judged by `bench`'s own gates; the results travel in the report (`slo`)."""
    from r4b_deploy.bench.runner import run_bench
    from r4b_deploy.bench.slo import evaluate_slos

    config = bench_config(deployment, endpoint.url, api_key, bench.preset)
    report = run_bench(config, on_progress=lambda p: _emit(on_event, UpEvent("bench", "progress", data=p)))
    return report.model_copy(update={"slo": evaluate_slos(report, list(bench.gates), bench.max_error_rate)})
