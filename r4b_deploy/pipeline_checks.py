"""`up` once the server is healthy: smoke with the plan's thinking modes, the bench judged as
`r4b-deploy bench` judges it, and the report folder (`pipeline_report.py` writes its files).

Checks that ran and failed are a report, not an exception: the caller leaves the server up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r4b_deploy.errors import R4BError
from r4b_deploy.pipeline_events import EventCallback, Stages, UpEvent, emit
from r4b_deploy.pipeline_report import (
    HTML_FILE,
    UP_FILE,
    BenchPreset,
    ReplicaServed,
    UpReport,
    bench_summary,
    gate_failures,
    report_dir_of,
    write_bench,
    write_plan,
    write_smoke,
    write_up,
)
from r4b_deploy.planning.drift import PlanCheck, write_plan_check

if TYPE_CHECKING:
    from pydantic import SecretStr

    from r4b_deploy.bench.report import BenchReport
    from r4b_deploy.bench.runner import BenchConfig
    from r4b_deploy.bench.slo import SloGate
    from r4b_deploy.deployment import Deployment
    from r4b_deploy.launch.base import BuildResult, Endpoint, RuntimeName
    from r4b_deploy.planning.plan import Plan

# The benchmark `up` runs. quick: a short look at latency alone and under some load, minutes at
# most; full: the benchmark's own default sweep, capped at the plan's max_num_seqs.
BENCH_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"concurrencies": [1, 4], "requests_per_level": 16, "warmup_requests": 2, "max_tokens": 128},
    "full": {},
}


@dataclass(frozen=True)
class BenchJudging:
    """Which benchmark `up` runs and the gates it must hold."""

    preset: BenchPreset
    gates: Sequence[SloGate]
    max_error_rate: float


def api_key_from(env: Mapping[str, str]) -> SecretStr | None:
    """The deployment's API key, from its env file's values (read once by the caller)."""
    from pydantic import SecretStr

    from r4b_deploy.render.env import API_KEY_VAR

    key = env.get(API_KEY_VAR)
    return SecretStr(key) if key else None


def check_and_report(
    deployment: Deployment,
    plan: Plan,
    runtime_name: RuntimeName,
    endpoint: Endpoint,
    api_key: SecretStr | None,
    bench: BenchJudging,
    stages: Stages,
    build_result: BuildResult | None,
    healthy_after_s: float,
    on_event: EventCallback | None,
    plan_check: PlanCheck,
    *,
    already_running: bool = False,
) -> UpReport:
    """Smoke, then the bench (unless `none`), each file written as it is known; then up.json and the page."""
    from r4b_deploy.checks.smoke import SmokeConfig, run_smoke

    report_dir = report_dir_of(deployment.dir)
    files = [write_plan(plan, report_dir), write_plan_check(plan_check, report_dir)]

    with stages.stage("smoke", "protocol checks" if deployment.rehearsal else "protocol and model checks"):
        smoke = run_smoke(
            SmokeConfig(
                url=endpoint.url,
                api_key=api_key,
                served_model_name=endpoint.served_model_name,
                modes=plan.thinking_modes,  # [] for a model without R-4B's modes: those checks are skipped
                protocol_only=deployment.rehearsal,  # random weights: the protocol, not the answers
            ),
            on_check=lambda check: emit(on_event, UpEvent("smoke", "progress", check.name, data=check)),
        )
    files += write_smoke(smoke, report_dir)

    bench_error = None
    summary: list[dict[str, Any]] = []
    failed_gates: list[str] = []
    warnings: list[str] = list(plan_check.warnings)
    bench_report = None
    before_bench = _requests_per_replica(deployment) if bench.preset != "none" else {}
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
    replicas = _replicas_served(deployment, before_bench)

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
        already_running=already_running,
        smoke_ok=smoke.ok,
        smoke_passed=smoke.passed,
        smoke_failed=smoke.failed,
        smoke_failures=[f"{c.name}: {c.reason}" for c in smoke.failures()],
        bench=bench.preset,
        bench_error=bench_error,
        bench_gate_failures=failed_gates,
        bench_summary=summary,
        files=[*files, UP_FILE, HTML_FILE],
        warnings=warnings,
        plan_check=plan_check,
        replicas=replicas,
    )
    write_up(report, plan=plan, smoke=smoke, bench=bench_report)
    return report


def _requests_per_replica(deployment: Deployment) -> dict[str, int | None]:
    """Each replica's request count from its own /metrics, read at once; empty for a deployment
    without a router."""
    if deployment.router is None:
        return {}
    from r4b_deploy.client.metrics import requests_served_each

    counts = requests_served_each([replica.local_url for replica in deployment.replicas])
    return {replica.service: count for replica, count in zip(deployment.replicas, counts, strict=True)}


def _replicas_served(deployment: Deployment, before_bench: dict[str, int | None]) -> list[ReplicaServed]:
    """After the bench: what each replica served, and its share of the bench (the difference from
    `before_bench`; unknown when either count is, or when it went down, as a restarted replica's does)."""
    if deployment.router is None:
        return []
    after = _requests_per_replica(deployment)
    served = []
    for replica in deployment.replicas:
        now, then = after.get(replica.service), before_bench.get(replica.service)
        in_bench = now - then if now is not None and then is not None and now >= then else None
        served.append(
            ReplicaServed(service=replica.service, url=replica.local_url, requests_served=now, bench_requests=in_bench)
        )
    return served


def bench_config(deployment: Deployment, url: str, api_key: SecretStr | None, preset: BenchPreset) -> BenchConfig:
    """The preset's BenchConfig for this deployment: never more in flight than vLLM's max_num_seqs
    (each replica's, behind the router)."""
    from r4b_deploy.bench.runner import BenchConfig

    return BenchConfig(
        base_url=url,
        api_key=api_key,
        model=deployment.served_model_name,
        max_concurrency=deployment.plan.vllm.max_num_seqs * len(deployment.replicas),
        **BENCH_PRESETS[preset],
    )


def _run_bench(
    deployment: Deployment,
    endpoint: Endpoint,
    api_key: SecretStr | None,
    bench: BenchJudging,
    on_event: EventCallback | None,
) -> BenchReport:
    """The benchmark, judged by `bench`'s own gates; the results travel in the report (`slo`)."""
    from r4b_deploy.bench.runner import run_bench
    from r4b_deploy.bench.slo import evaluate_slos

    config = bench_config(deployment, endpoint.url, api_key, bench.preset)
    report = run_bench(config, on_progress=lambda p: emit(on_event, UpEvent("bench", "progress", data=p)))
    return report.model_copy(update={"slo": evaluate_slos(report, list(bench.gates), bench.max_error_rate)})
