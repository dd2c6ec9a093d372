"""SLO gates: parsing, directions, unknown names, evaluation on every level."""

from __future__ import annotations

import pytest

from r4b_deploy.bench.slo import SloGate, evaluate_slos, format_value, parse_slo, violations_line
from r4b_deploy.errors import UsageError


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold"),
    [
        ("p95_ttft_ms=500", "p95_ttft_ms", "<=", 500.0),
        ("ttft_p95_ms=500", "p95_ttft_ms", "<=", 500.0),  # metric first, as people write it
        ("tpot_p95_ms=50", "p95_tpot_ms", "<=", 50.0),
        ("mean_e2el_ms <= 2e3", "mean_e2el_ms", "<=", 2000.0),
        ("first_answer_token_p99_ms=900", "p99_time_to_first_answer_ms", "<=", 900.0),  # the old name too
        ("output_throughput=900", "output_throughput", ">=", 900.0),  # more is better
        ("request_throughput>=1.5", "request_throughput", ">=", 1.5),
        ("error_rate=0.01", "error_rate", "<=", 0.01),
        ("failed>=0", "failed", ">=", 0.0),
    ],
)
def test_parse(text: str, metric: str, op: str, threshold: float) -> None:
    assert parse_slo(text) == SloGate(metric=metric, op=op, threshold=threshold)


def test_unknown_metric_lists_the_valid_names() -> None:
    with pytest.raises(UsageError) as exc:
        parse_slo("ttft_p42_ms=5")
    assert "unknown metric 'ttft_p42_ms'" in exc.value.message
    assert "p95_ttft_ms" in exc.value.message and "output_throughput" in exc.value.message


@pytest.mark.parametrize("text", ["p95_ttft_ms", "p95_ttft_ms=", "p95_ttft_ms=fast", "=5", "p95_ttft_ms<5"])
def test_malformed_gate_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_slo(text)


def test_gates_hold_at_every_level(make_report) -> None:
    report = make_report()  # TTFT 50 ms at concurrency 1, 100 ms at concurrency 4
    results = evaluate_slos(report, [parse_slo("p95_ttft_ms=80")])
    by_level = {(r.metric, r.level): r for r in results}
    assert by_level[("p95_ttft_ms", "concurrency 1")].passed
    failed = by_level[("p95_ttft_ms", "concurrency 4")]
    assert not failed.passed and failed.value == pytest.approx(100.0)
    assert all(r.passed for r in results if r.metric == "error_rate")
    line = violations_line(results)
    assert line == "p95_ttft_ms = 100 at concurrency 4 (wanted <= 80)"


def test_failed_requests_fail_the_run_unless_allowed(make_report) -> None:
    report = make_report(failures=2)  # 2 of 10 failed per level
    strict = evaluate_slos(report, [])
    assert [r.passed for r in strict] == [False, False]
    assert all(r.passed for r in evaluate_slos(report, [], max_error_rate=0.2))


def test_a_metric_with_no_value_fails_its_gate(make_report) -> None:
    report = make_report()
    results = evaluate_slos(report, [SloGate(metric="p95_ttft_ms", op="<=", threshold=1e9)])
    assert all(r.passed for r in results)
    assert not SloGate(metric="p95_ttft_ms", op="<=", threshold=1e9).holds(None)


def test_format_value() -> None:
    assert format_value(17538.6) == "17,539"
    assert format_value(8.48312) == "8.483"
    assert format_value(None) == "no value"


@pytest.mark.parametrize(
    ("text", "gate"),
    [
        ("short:p95_ttft_ms=300", SloGate(metric="p95_ttft_ms", op="<=", threshold=300.0, mode="short")),
        ("max_cut_off_thinking_rate=0.1", SloGate(metric="cut_off_thinking_rate", op="<=", threshold=0.1)),
        ("p95_time_to_first_answer_ms=2000", SloGate(metric="p95_time_to_first_answer_ms", op="<=", threshold=2e3)),
        (
            "long: time_to_first_answer_p99_ms<=9",
            SloGate(metric="p99_time_to_first_answer_ms", op="<=", threshold=9.0, mode="long"),
        ),
    ],
)
def test_parse_mode_gates_and_new_metrics(text: str, gate: SloGate) -> None:
    assert parse_slo(text) == gate


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("deep:p95_ttft_ms=1", "unknown thinking mode 'deep'"),
        ("short:output_throughput=1", "unknown per-mode metric"),  # a mode's share of a level has no throughput
        ("max_cut_off_thinking_rate>=0.1", "says <="),
    ],
)
def test_bad_mode_gates_are_usage_errors(text: str, says: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_slo(text)
    assert says in exc.value.message


def test_a_mode_gate_reads_that_modes_figures(make_report) -> None:
    report = make_report()  # a mix: short TTFT 50 / 100 ms, long first answer 500 / 1000 ms
    gates = [parse_slo("short:p95_ttft_ms=80"), parse_slo("long:p95_time_to_first_answer_ms=600")]
    results = [r for r in evaluate_slos(report, gates) if r.mode]
    got = {(r.mode, r.level): (r.value, r.passed) for r in results}
    assert got == {
        ("short", "concurrency 1"): (pytest.approx(50.0), True),
        ("short", "concurrency 4"): (pytest.approx(100.0), False),
        ("long", "concurrency 1"): (pytest.approx(500.0), True),
        ("long", "concurrency 4"): (pytest.approx(1000.0), False),
    }
    assert "short:p95_ttft_ms = 100 at concurrency 4 (wanted <= 80)" in violations_line(results)


def test_a_mode_gate_no_level_ran_fails(make_report) -> None:
    results = evaluate_slos(make_report(), [parse_slo("auto:p95_ttft_ms=1000")])
    unseen = [r for r in results if r.mode == "auto"]
    assert len(unseen) == 1 and not unseen[0].passed and unseen[0].level == "no level ran mode auto"
