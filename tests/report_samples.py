"""A plan, a smoke report and a bench report with every section filled, for the HTML report's
unit tests and its browser test. Strings carry markup on purpose: the page must escape them."""

from __future__ import annotations

from datetime import datetime, timezone

from support import bench_report

from r4b_deploy.bench.metrics import compute_metrics
from r4b_deploy.bench.report import BenchReport, LevelResult
from r4b_deploy.bench.schedule import LoadLevel
from r4b_deploy.bench.slo import evaluate_slos, parse_slo
from r4b_deploy.checks.smoke import CheckResult, SmokeReport
from r4b_deploy.client.records import RequestRecord
from r4b_deploy.planning.plan import Plan, PlanRequest

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def sample_plan() -> Plan:
    from r4b_deploy.planning.planner import make_plan

    return make_plan(PlanRequest(gpu="L4"))


def sample_smoke() -> SmokeReport:
    checks = [
        CheckResult(name="health", level="protocol", status="pass", reason="/health answered 200", time_ms=12.5),
        CheckResult(name="models", level="protocol", status="fail", reason=f"server said {HOSTILE}", time_ms=3.25),
        CheckResult(name="image_answer", level="model", status="skip", reason="--protocol-only", time_ms=0.0),
    ]
    return SmokeReport(
        url="http://127.0.0.1:8000",
        served_model_name="r4b",
        protocol_only=True,
        modes=["auto", "long", "short"],
        timeout_s=60,
        started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        duration_ms=2345.6,
        image_prompt_tokens={"small": 71, "large": 296},
        checks=checks,
    )


def _records(scale: float) -> list[RequestRecord]:
    recs = []
    for i in range(12):
        thought = i % 3 != 0
        recs.append(
            RequestRecord(
                success=True,
                mode=("auto", "long", "short")[i % 3],
                start_s=i * 0.1,
                latency_s=(1.0 + i * 0.013) * scale,
                ttft_s=(0.05 + i * 0.002) * scale,
                first_answer_token_s=(0.5 if thought else 0.05) * scale,
                itl_s=[0.01 * scale] * 9,
                prompt_tokens=64,
                output_tokens=10,
                reasoning_tokens=6 if thought else 0,
                answer_tokens=4 if thought else 10,
                finish_reason="stop",
                thought=thought,
            )
        )
    recs.append(RequestRecord(success=False, error_kind="http_5xx", error=f"HTTP 500: {HOSTILE}", mode="short"))
    return recs


def sample_bench() -> BenchReport:
    levels = []
    for conc, scale in ((1, 1.0), (4, 1.7), (16, 3.1)):
        recs = _records(scale)
        levels.append(
            LevelResult(
                load=LoadLevel(kind="concurrency", concurrency=conc),
                label=f"c{conc}",
                metrics=compute_metrics(recs, duration_s=3.0 / conc),
                client_cpu_s=0.1,
                client_cpu_fraction=0.05,
                records=recs,
            )
        )
    report = bench_report(levels, warmup_requests=4, warnings=[f"a warning with markup {HOSTILE}"])
    gates = [parse_slo("p95_ttft_ms=1000"), parse_slo("output_throughput>=100000")]
    return report.model_copy(update={"slo": evaluate_slos(report, gates, max_error_rate=0.1)})


# One gate set to pass, one to fail, one left inconclusive at c1: its limit, 71 ms, sits inside
# c1's p95 TTFT interval (the value is 70.9 ms; the largest TTFT, 72 ms, is in some resamples).
VERDICT_GATES = ("p95_ttft_ms<=1000", "output_throughput>=100000", "p95_ttft_ms<=71")


def sample_verdicts(gates: tuple[str, ...] = VERDICT_GATES) -> BenchReport:
    """`sample_bench` judged by gates whose verdicts are pass, fail and inconclusive, with intervals."""
    report = sample_bench()
    return report.model_copy(update={"slo": evaluate_slos(report, [parse_slo(g) for g in gates], max_error_rate=0.1)})
