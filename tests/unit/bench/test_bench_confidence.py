"""Gates that know noise: bootstrap intervals over runs and requests, pass/fail/inconclusive."""

from __future__ import annotations

import pytest
from support import bench_report

from r4b_deploy.bench.confidence import Interval, RunSlice, bootstrap_intervals, runs_to_decide
from r4b_deploy.bench.metrics import compute_metrics
from r4b_deploy.bench.report import BenchReport, LevelResult, SloResult
from r4b_deploy.bench.runner import merge_runs
from r4b_deploy.bench.schedule import LoadLevel
from r4b_deploy.bench.slo import evaluate_slos, inconclusive_line, parse_slo
from r4b_deploy.client.records import RequestRecord

LOAD = LoadLevel(kind="concurrency", concurrency=2)


def _records(ttfts_ms: list[float], mode: str = "auto") -> list[RequestRecord]:
    return [
        RequestRecord(
            success=True,
            mode=mode,
            start_s=i * 0.01,
            latency_s=0.5,
            ttft_s=ms / 1000,
            first_answer_token_s=ms / 1000,
            itl_s=[0.01] * 4,
            prompt_tokens=16,
            output_tokens=5,
            reasoning_tokens=0,
            answer_tokens=5,
            finish_reason="stop",
        )
        for i, ms in enumerate(ttfts_ms)
    ]


def _level(records: list[RequestRecord], duration_s: float = 1.0, label: str = "concurrency 2") -> LevelResult:
    return LevelResult(
        load=LOAD,
        label=label,
        metrics=compute_metrics(records, duration_s),
        client_cpu_s=0.1,
        client_cpu_fraction=0.1,
        records=records,
    )


def _report(*levels: LevelResult) -> BenchReport:
    return bench_report(levels, mode="auto", max_tokens=64)


SPREAD_MS = [10.0 + 3 * i for i in range(32)]  # TTFT 10..103 ms: the median about 56 ms


def _verdict(gate: str, report: BenchReport) -> SloResult:
    (result,) = [r for r in evaluate_slos(report, [parse_slo(gate)]) if r.metric != "error_rate"]
    return result


def test_a_gate_passes_fails_or_is_inconclusive_by_its_whole_interval() -> None:
    report = _report(_level(_records(SPREAD_MS)))
    held = _verdict("median_ttft_ms=200", report)
    assert (held.verdict, held.passed) == ("pass", True)
    assert held.ci_low < held.value < held.ci_high and held.confidence == pytest.approx(0.95)
    broken = _verdict("median_ttft_ms=20", report)
    assert (broken.verdict, broken.passed) == ("fail", False)
    straddled = _verdict(f"median_ttft_ms={held.value}", report)  # the figure itself holds; its interval does not
    assert (straddled.verdict, straddled.passed) == ("inconclusive", False)
    assert straddled.ci_low < straddled.threshold < straddled.ci_high
    assert straddled.runs == 1 and straddled.runs_to_decide is None  # on the limit: no run count decides it
    near = _verdict(f"median_ttft_ms={held.value + 3}", report)
    assert near.verdict == "inconclusive" and near.runs_to_decide is not None and near.runs_to_decide > 1
    line = inconclusive_line([near])
    assert "median_ttft_ms" in line and "95% interval" in line and f"--repeat {near.runs_to_decide}" in line


def test_identical_requests_give_a_point_interval_and_the_old_verdict() -> None:
    report = _report(_level(_records([50.0] * 16)))
    result = _verdict("p95_ttft_ms=50", report)
    assert (result.ci_low, result.ci_high, result.verdict) == (pytest.approx(50.0), pytest.approx(50.0), "pass")


def test_the_interval_is_reproducible_with_its_seed_and_moves_with_another() -> None:
    level = _level(_records(SPREAD_MS))
    extracts = {"p90": lambda m: m.flat()["p90_ttft_ms"]}
    runs = [RunSlice(requests=len(level.records), duration_s=1.0)]
    first = bootstrap_intervals(level.records, runs, extracts, seed=7)
    assert first == bootstrap_intervals(level.records, runs, extracts, seed=7)
    assert first != bootstrap_intervals(level.records, runs, extracts, seed=8)


def test_repeats_that_disagree_widen_the_interval() -> None:
    """Resampling runs first: two runs far apart give a wider interval than one run of their size."""
    fast, slow = _records([20.0 + i for i in range(16)]), _records([80.0 + i for i in range(16)])
    merged = merge_runs([_level(fast, 1.0), _level(slow, 2.0)])
    assert merged.runs == [RunSlice(requests=16, duration_s=1.0), RunSlice(requests=16, duration_s=2.0)]
    assert merged.records == [*fast, *slow] and merged.metrics.duration_s == pytest.approx(3.0)
    pooled = _level([*fast, *slow], 3.0)
    by_runs = _verdict("mean_ttft_ms=200", _report(merged))
    by_requests = _verdict("mean_ttft_ms=200", _report(pooled))
    assert by_runs.value == pytest.approx(by_requests.value) and by_runs.runs == 2
    assert by_runs.ci_high - by_runs.ci_low > 1.5 * (by_requests.ci_high - by_requests.ci_low)
    # The throughput moves between runs too (one run alone has a fixed count over a fixed time).
    throughput = _verdict("request_throughput>=1", _report(merged))
    assert throughput.ci_low < throughput.ci_high


def test_a_per_mode_gate_gets_its_own_interval() -> None:
    mix = _records(SPREAD_MS, mode="short") + _records([500.0] * 8, mode="long")
    report = _report(_level(mix))
    short = _verdict("short:median_ttft_ms=200", report)
    assert short.mode == "short" and short.verdict == "pass" and short.ci_high < 200
    long_ = _verdict("long:median_ttft_ms=200", report)
    assert long_.verdict == "fail" and long_.ci_low == pytest.approx(500.0)


def test_the_error_rate_gate_judges_the_failures_counted_not_an_interval() -> None:
    records = [*_records(SPREAD_MS), RequestRecord(success=False, error_kind="http_5xx", error="HTTP 500")]
    (errors,) = [r for r in evaluate_slos(_report(_level(records)), []) if r.metric == "error_rate"]
    assert errors.verdict == "fail" and errors.ci_low == errors.ci_high == errors.value


def test_runs_to_decide_shrinks_the_interval_as_one_over_sqrt_runs() -> None:
    interval = Interval(low=80.0, high=120.0, confidence=0.95)  # half-width 20 around 100
    assert runs_to_decide(3, 100.0, interval, threshold=110.0) == 12  # 3 x (20 / 10)^2
    assert runs_to_decide(3, 100.0, interval, threshold=100.0) is None


def test_a_result_without_a_verdict_reads_as_its_passed_flag() -> None:
    """bench JSON written before verdicts existed still loads with the right verdict."""
    common = {"gate": "p95_ttft_ms <= 5", "metric": "p95_ttft_ms", "op": "<=", "threshold": 5, "level": "c 1"}
    assert SloResult.model_validate({**common, "value": 9.0, "passed": False}).verdict == "fail"
    assert SloResult.model_validate({**common, "value": 1.0, "passed": True}).verdict == "pass"


def test_the_total_deadline_counts_every_repeat() -> None:
    from r4b_deploy.bench.config import BenchConfig

    options = {"base_url": "http://127.0.0.1:8000", "concurrencies": [1, 4], "timeout_s": 10.0, "warmup_requests": 0}
    once, thrice = BenchConfig(**options), BenchConfig(**options, repeat=3)
    preflight_s = once.timeout_s
    assert thrice.time_bound_s() - preflight_s == pytest.approx(3 * (once.time_bound_s() - preflight_s))
