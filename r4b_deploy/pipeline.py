"""`r4b-deploy up` as one library call: plan → render → build → run → health → smoke → bench → report.

Generic over the `Runtime` protocol (`launch/base.py`): every runtime builds (the process
runtime's build does nothing, and `up` shows no build stage for it), starts, waits, and on
failure saves its log and stops. The folder is the only state: the runtime is recorded in it
before anything starts, so `down` works after an `up` that stopped halfway (a crash, Ctrl-C).

A launch that fails (build, container exit, health timeout, Ctrl-C, SIGTERM) leaves nothing
running: the runtime is stopped and its leftovers removed before the error propagates, with
the server's last log lines in the error. A server `up` found already running and reused is not
its to stop on Ctrl-C (it is stopped only when it fails its health wait). A deployment that came
up but failed its smoke check or a bench gate stays up (the report says what failed;
`r4b-deploy down` stops it).

This module holds the folder's lock and the launch steps up to a healthy server; what follows
(smoke, bench, the report) is `pipeline_checks.py`, and the events both send `pipeline_events.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from r4b_deploy.errors import LaunchError, UsageError
from r4b_deploy.launch.base import Endpoint, Runtime, RuntimeName, make_runtime
from r4b_deploy.launch.startup_log import STARTUP_LOG_LINES
from r4b_deploy.pipeline_checks import BenchJudging, api_key_from, check_and_report
from r4b_deploy.pipeline_events import EventCallback, Stages, UpEvent, emit, raise_if_interrupted
from r4b_deploy.pipeline_report import BenchPreset, UpReport
from r4b_deploy.planning.drift import check_log

if TYPE_CHECKING:
    from r4b_deploy.bench.slo import SloGate
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.render.options import RenderOptions

__all__ = ["run_up"]

LOG_TAIL_LINES = 50  # server log lines a launch error carries
ALREADY_RUNNING = "found the server already running: reused, not started again"
LIVE_TAIL_LINES = 5  # log lines shown under the health wait's progress display
LIVE_TAIL_EVERY_S = 2.0  # how often the health wait refreshes that tail (each refresh reads the log)


def _runtime_reporting_to(name: RuntimeName, on_event: EventCallback | None) -> Runtime:
    """The runtime by name, its build lines and set-up notes turned into UpEvents."""
    return make_runtime(
        name,
        on_build_line=lambda line: emit(on_event, UpEvent("build", "line", data=line)),
        on_progress=lambda text: emit(on_event, UpEvent("start", "info", text)),
    )


def _with_rehearsal_wheelhouse(options: RenderOptions, on_event: EventCallback | None) -> RenderOptions:
    """The docker rehearsal installs vLLM's CPU build offline from a host wheelhouse: $R4B_WHEELHOUSE
    if set (a folder of wheels you already have), else the cached one, downloaded once."""
    import os

    from r4b_deploy.rehearsal.vllm_cpu import WHEELHOUSE_ENV, ensure_wheelhouse
    from r4b_deploy.render.options import RenderOptions

    configured = os.environ.get(WHEELHOUSE_ENV)
    if configured:
        emit(on_event, UpEvent("wheelhouse", "info", f"using ${WHEELHOUSE_ENV}={configured}"))
        # Validated like --wheelhouse: a folder holding wheels.
        wheelhouse = RenderOptions(wheelhouse=Path(configured)).wheelhouse
    else:
        wheelhouse = ensure_wheelhouse(on_progress=lambda text: emit(on_event, UpEvent("wheelhouse", "info", text)))
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

    One `up` or `down` per folder at a time (`launch/user_state.deployment_lock`): a second one
    waits a bounded time for the first, then raises EnvironmentProblem naming it. The rest as
    `_run_up`.
    """
    from r4b_deploy.launch.user_state import deployment_lock
    from r4b_deploy.render.deployment import check_folder_path

    check_folder_path(Path(out_dir))  # before the lock (or anything) names the folder
    with deployment_lock(out_dir, doing="up", on_wait=lambda text: emit(on_event, UpEvent("plan", "info", text))):
        return _run_up(
            request,
            options,
            out_dir,
            runtime=runtime,
            bench=bench,
            gates=gates,
            max_error_rate=max_error_rate,
            health_timeout_s=health_timeout_s,
            force=force,
            on_event=on_event,
        )


def _run_up(
    request: PlanRequest,
    options: RenderOptions,
    out_dir: Path,
    *,
    runtime: RuntimeName | Runtime,
    bench: BenchPreset,
    gates: Sequence[SloGate],
    max_error_rate: float,
    health_timeout_s: float | None,
    force: bool,
    on_event: EventCallback | None,
) -> UpReport:
    """`run_up` under the folder's lock.

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
    stages = Stages(on_event)
    runtime_obj = _runtime_reporting_to(runtime, on_event) if isinstance(runtime, str) else runtime

    with stages.stage("plan"):
        plan = make_plan(request)
    if plan.replica_count > 1 and not runtime_obj.runs_replicas:  # before anything is written or started
        raise UsageError(
            f"{plan.replica_count} replicas need the docker runtime: the {runtime_obj.name} runtime runs "
            "one vLLM server, with no router in front",
            fix="use --runtime docker, or --replicas 1",
        )
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
    running: Endpoint | None = None  # a server this `up` found running: reused, and never stopped by it
    try:
        if runtime_obj.builds_image:
            with stages.stage("build", deployment.image_tag):
                build_result = runtime_obj.build(deployment)
        # A server already running this deployment is reused, and `up` says so (not "✓ start").
        running = runtime_obj.running_endpoint(deployment, env)
        with stages.stage("start", ALREADY_RUNNING if running is not None else ""):
            endpoint = running or runtime_obj.start(deployment, env)
        timeout_s = health_timeout_s if health_timeout_s is not None else deployment.container.health.start_period_s
        with stages.stage("health", endpoint.url):
            _wait_healthy(runtime_obj, folder, endpoint, timeout_s, on_event)
        healthy_after_s = stages.since_start_s()
    except KeyboardInterrupt:
        _cleanup(runtime_obj, folder, started=running is None)
        raise
    except LaunchError as exc:
        raise _launch_failure(runtime_obj, folder, exc) from exc
    except BaseException:
        _cleanup(runtime_obj, folder, started=running is None)
        raise

    try:
        # vLLM's own start-up figures (in its log once it is healthy) beside the plan's.
        plan_check = check_log(plan, _log_tail(runtime_obj, folder, STARTUP_LOG_LINES))
        return check_and_report(
            deployment,
            plan,
            runtime_obj.name,
            endpoint,
            api_key_from(env),
            BenchJudging(bench, gates, max_error_rate),
            stages,
            build_result,
            healthy_after_s,
            on_event,
            plan_check,
            already_running=running is not None,
        )
    except BaseException:
        # Ctrl-C, or smoke/bench could not run at all: `up` failed as a whole; leave nothing running.
        # (Checks that ran and failed are a report, not an exception: the server then stays up.)
        _cleanup(runtime_obj, folder, started=running is None)
        raise


def _wait_healthy(
    runtime: Runtime, folder: Path, endpoint: Endpoint, timeout_s: float, on_event: EventCallback | None
) -> float:
    last_tail = {"at": -LIVE_TAIL_EVERY_S, "text": ""}

    def on_tick(elapsed_s: float) -> None:
        raise_if_interrupted()
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


def _cleanup(runtime: Runtime, folder: Path, *, started: bool = True) -> None:
    """Stop whatever this `up` started; errors here must not hide the one being raised. A server
    it found running (`started=False`: an earlier `up`'s, serving already) is left as it was."""
    if not started:
        return
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
