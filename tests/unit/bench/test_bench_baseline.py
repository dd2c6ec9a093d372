"""`--baseline FILE`: regression gates against an earlier result, and refusing another workload."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bench_confidence import SPREAD_MS, _level, _records, _report

from r4b_deploy.bench.baseline import (
    DEFAULT_REGRESSION_METRICS,
    check_prompt_tokens,
    check_workload,
    load_baseline,
    parse_tolerances,
    regression_gates,
)
from r4b_deploy.bench.config import BenchConfig
from r4b_deploy.bench.metrics import compute_metrics
from r4b_deploy.bench.report import BenchReport, LevelResult
from r4b_deploy.bench.slo import evaluate_slos, violations_line
from r4b_deploy.bench.writers import render_json, result_json
from r4b_deploy.errors import UsageError

FILE = Path("base.json")


def _scaled(report: BenchReport, factor: float) -> BenchReport:
    """The same report with every latency `factor` times longer."""
    levels = []
    for lv in report.levels:
        recs = [
            r.replace(
                ttft_s=r.ttft_s * factor if r.ttft_s is not None else None,
                latency_s=r.latency_s * factor,
                first_answer_token_s=r.first_answer_token_s * factor if r.first_answer_token_s else None,
                itl_s=[g * factor for g in r.itl_s],
            )
            for r in lv.records
        ]
        metrics = compute_metrics(recs, lv.metrics.duration_s)
        levels.append(lv.model_copy(update={"records": recs, "metrics": metrics}))
    return report.model_copy(update={"levels": levels})


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["10%"], {"": 0.10}),
        (["0.05"], {"": 0.05}),
        (["5%", "p95_ttft_ms=20%"], {"": 0.05, "p95_ttft_ms": 0.20}),
    ],
)
def test_parse_tolerances(texts: list[str], expected: dict[str, float]) -> None:
    assert parse_tolerances(texts) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["ten", "p95_nothing_ms=5%", "150%", "-5%"])
def test_a_bad_tolerance_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_tolerances([text])


def test_gates_move_the_baseline_by_the_tolerance_in_the_metric_direction(make_report) -> None:
    baseline = result_json(make_report())
    gates = regression_gates(baseline, parse_tolerances(["10%", "p95_ttft_ms=50%"]))
    by = {(g.level, g.metric): g for g in gates}
    assert {m for _, m in by} == set(DEFAULT_REGRESSION_METRICS)
    ttft = by[("concurrency 4", "p95_ttft_ms")]  # 100 ms there
    assert (ttft.op, ttft.threshold, ttft.baseline) == ("<=", pytest.approx(150.0), pytest.approx(100.0))
    throughput = by[("concurrency 1", "output_throughput")]
    assert throughput.op == ">=" and throughput.threshold == pytest.approx(0.9 * throughput.baseline)
    assert str(ttft) == "p95_ttft_ms <= 150 (baseline 100)"


def test_the_same_run_passes_a_slower_one_fails_and_a_noisy_one_is_inconclusive(make_report) -> None:
    report = make_report()
    gates = regression_gates(result_json(report), {})
    assert {r.verdict for r in evaluate_slos(report, gates)} == {"pass"}
    slower = [r for r in evaluate_slos(_scaled(report, 1.5), gates) if r.metric == "p95_ttft_ms"]
    assert {r.verdict for r in slower} == {"fail"}
    assert "(wanted <= 55, baseline 50)" in violations_line(slower)
    # A spread of TTFTs: the same figure, 5% over a baseline, sits inside its own interval.
    noisy = _report(_level(_records(SPREAD_MS)))
    base = result_json(_scaled(noisy, 1 / 1.05))
    (median,) = [g for g in regression_gates(base, {}) if g.metric == "median_ttft_ms"]
    (result,) = [r for r in evaluate_slos(noisy, [median]) if r.metric == "median_ttft_ms"]
    assert result.verdict == "inconclusive" and result.baseline == pytest.approx(median.baseline)


def _config(**overrides: object) -> BenchConfig:
    options = {"base_url": "http://127.0.0.1:8000", "concurrencies": [1, 4], "mode": "mix", "max_tokens": 10}
    return BenchConfig(**{**options, **overrides})


def test_a_baseline_of_the_same_workload_is_accepted(make_report) -> None:
    check_workload(result_json(make_report()), _config(), FILE)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"concurrencies": [1, 8]}, "levels"),
        ({"mode": "long"}, "thinking_mode"),
        ({"max_tokens": 64}, "max_tokens"),
        ({"workload": "image"}, "workload"),
    ],
)
def test_a_baseline_of_another_workload_is_refused(make_report, overrides: dict, named: str) -> None:
    with pytest.raises(UsageError) as exc:
        check_workload(result_json(make_report()), _config(**overrides), FILE)
    assert f"--baseline {FILE} ran another workload" in exc.value.message and named in exc.value.message


def test_prompts_of_another_size_are_refused(make_report) -> None:
    report = make_report()
    baseline = result_json(report)
    check_prompt_tokens(baseline, report, FILE)
    bigger = []
    for lv in report.levels:
        recs = [r.replace(prompt_tokens=(r.prompt_tokens or 0) * 4) for r in lv.records]
        bigger.append(LevelResult(**{**lv.__dict__, "records": recs, "metrics": compute_metrics(recs, 1.0)}))
    with pytest.raises(UsageError, match="prompts of 64 tokens there, 256 here"):
        check_prompt_tokens(baseline, report.model_copy(update={"levels": bigger}), FILE)


def test_load_baseline_reads_a_bench_json_and_refuses_anything_else(make_report, tmp_path: Path) -> None:
    good = tmp_path / "bench.json"
    good.write_text(render_json(make_report()))
    assert [lv["label"] for lv in load_baseline(good)["levels"]] == ["concurrency 1", "concurrency 4"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"levels": 3}')
    with pytest.raises(UsageError, match="not a bench result"):
        load_baseline(bad)
    with pytest.raises(UsageError, match="cannot read it as JSON"):
        load_baseline(tmp_path / "missing.json")
