"""Metrics as a pure function of handmade records: the numbers are worked out by hand."""

from __future__ import annotations

import math

import pytest

from r4b_deploy.bench.metrics import compute_metrics, distribution, metric_names, percentile, tpot_s
from r4b_deploy.client.records import RequestRecord


def ok(**kw) -> RequestRecord:
    base = {"success": True, "prompt_tokens": 10, "output_tokens": 11, "ttft_s": 0.1, "latency_s": 1.1}
    base.update(kw)
    return RequestRecord(**base)


def fail(kind: str, message: str = "boom", **kw) -> RequestRecord:
    return RequestRecord(success=False, error_kind=kind, error=message, **kw)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([1, 2, 3, 4], 90, 3.7),  # rank 2.7: 3 + 0.7 x (4 - 3)
        ([10], 99, 10),
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_distribution_in_ms_with_population_std() -> None:
    d = distribution([0.001, 0.002, 0.003, 0.004])
    assert d.count == 4
    assert d.mean == pytest.approx(2.5)
    assert d.median == pytest.approx(2.5)
    assert d.std == pytest.approx(math.sqrt(1.25))  # population: sqrt(mean of squared deviations)
    assert d.percentiles["p90"] == pytest.approx(3.7)


def test_empty_distribution_is_none_not_zero() -> None:
    d = distribution([])
    assert d.count == 0 and d.mean is None and d.percentiles["p99"] is None


def test_tpot_excludes_the_first_token() -> None:
    # 11 tokens, first at 0.1 s, last at 1.1 s: 10 gaps of 0.1 s.
    assert tpot_s(ok()) == pytest.approx(0.1)
    # One output token: TPOT is undefined, and so left out (not 0, not latency).
    assert tpot_s(ok(output_tokens=1, latency_s=0.5)) is None
    assert tpot_s(ok(output_tokens=None)) is None
    assert tpot_s(ok(ttft_s=None)) is None
    assert tpot_s(fail("timeout")) is None


def test_level_totals_and_throughputs() -> None:
    records = [ok(), ok(prompt_tokens=20, output_tokens=21, latency_s=2.1), fail("http_5xx")]
    m = compute_metrics(records, duration_s=2.0)
    assert (m.num_prompts, m.completed, m.failed) == (3, 2, 1)
    assert m.total_input_tokens == 30
    assert m.total_output_tokens == 32
    assert m.request_throughput == pytest.approx(1.0)
    assert m.output_throughput == pytest.approx(16.0)
    assert m.total_token_throughput == pytest.approx(31.0)
    assert m.error_rate == pytest.approx(1 / 3)
    # TPOT per request: 1.0/10 and 2.0/20, both 0.1 s.
    assert m.tpot.mean == pytest.approx(100.0)
    assert m.e2el.mean == pytest.approx(1600.0)


def test_one_token_replies_do_not_enter_tpot() -> None:
    m = compute_metrics([ok(output_tokens=1, latency_s=0.1), ok()], duration_s=1.0)
    assert m.tpot.count == 1
    assert m.tpot.mean == pytest.approx(100.0)
    assert m.ttft.count == 2


def test_itl_pools_every_gap_of_every_successful_request() -> None:
    records = [ok(itl_s=[0.01, 0.03]), ok(itl_s=[0.02]), fail("stream", itl_s=[9.0])]
    m = compute_metrics(records, duration_s=1.0)
    assert m.itl.count == 3
    assert m.itl.mean == pytest.approx(20.0)
    assert m.itl.median == pytest.approx(20.0)


def test_errors_by_kind_and_samples() -> None:
    records = [
        fail("http_429", "HTTP 429: slow down"),
        fail("http_429", "HTTP 429: slow down"),
        fail("timeout", "timeout: no data"),
        fail("http_5xx", "HTTP 500: oops"),
        ok(),
    ]
    m = compute_metrics(records, duration_s=1.0)
    assert m.errors_by_kind == {"http_429": 2, "http_5xx": 1, "timeout": 1}
    assert m.error_samples == ["http_429: HTTP 429: slow down", "timeout: timeout: no data", "http_5xx: HTTP 500: oops"]
    assert m.error_rate == pytest.approx(0.8)


def test_reasoning_and_answer_per_mode() -> None:
    records = [
        ok(
            mode="long",
            output_tokens=100,
            reasoning_tokens=90,
            answer_tokens=10,
            thought=True,
            first_answer_token_s=0.9,
        ),
        ok(mode="long", output_tokens=50, reasoning_tokens=50, answer_tokens=0, thought=True, truncated_reasoning=True),
        ok(
            mode="short",
            output_tokens=20,
            reasoning_tokens=0,
            answer_tokens=20,
            thought=False,
            first_answer_token_s=0.1,
        ),
        ok(mode="auto", output_tokens=30, reasoning_tokens=None, answer_tokens=None, thought=True),
        fail("http_5xx", mode="short"),
    ]
    m = compute_metrics(records, duration_s=1.0)
    assert list(m.modes) == ["auto", "long", "short"]
    long, short, auto = m.modes["long"], m.modes["short"], m.modes["auto"]
    assert (long.completed, long.reasoning_tokens, long.answer_tokens) == (2, 140, 10)
    assert long.mean_reasoning_tokens == pytest.approx(70.0)
    assert long.mean_answer_tokens == pytest.approx(5.0)
    assert long.truncated_reasoning == 1
    assert long.thought_fraction == pytest.approx(1.0)
    assert long.mean_first_answer_token_ms == pytest.approx(900.0)
    assert (short.requests, short.completed, short.mean_reasoning_tokens) == (2, 1, 0.0)
    assert short.thought_fraction == 0.0
    assert auto.split_unknown == 1 and auto.mean_reasoning_tokens is None
    assert m.total_reasoning_tokens == 140
    assert m.total_answer_tokens == 30
    assert m.truncated_reasoning == 1
    assert m.time_to_first_answer.count == 2


def test_peak_concurrency_from_start_and_end_times() -> None:
    records = [ok(start_s=0.0, latency_s=1.0), ok(start_s=0.5, latency_s=1.0), ok(start_s=1.0, latency_s=0.2)]
    # At 1.0 the first ends as the third starts: two in flight, not three.
    assert compute_metrics(records, duration_s=2.0).peak_concurrency == 2


def test_no_records_and_zero_duration_do_not_divide_by_zero() -> None:
    m = compute_metrics([], duration_s=0.0)
    assert m.request_throughput == 0.0 and m.error_rate == 0.0 and m.ttft.mean is None


def test_missing_usage_is_counted() -> None:
    m = compute_metrics([ok(output_tokens=None), ok()], duration_s=1.0)
    assert m.missing_usage == 1
    assert m.total_output_tokens == 11


def test_flat_names_follow_vllm() -> None:
    flat = compute_metrics([ok()], duration_s=1.0).flat()
    for name in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std", "p50", "p90", "p95", "p99"):
            assert f"{stat}_{name}_ms" in flat
    assert flat["mean_ttft_ms"] == pytest.approx(100.0)
    assert flat["duration"] == 1.0
    assert set(flat) == set(metric_names())


def test_cut_off_thinking_and_where_the_split_came_from() -> None:
    records = [
        ok(mode="auto", output_tokens=64, reasoning_tokens=64, answer_tokens=0, thought=True,
           truncated_reasoning=True, token_split_source="text", split_adjusted=True, reasoning_path="reasoning"),
        ok(mode="auto", output_tokens=20, reasoning_tokens=12, answer_tokens=8, thought=True,
           token_split_source="tokenize", reasoning_path="think_tags", first_answer_token_s=0.6),
        ok(mode="short", output_tokens=5, reasoning_tokens=0, answer_tokens=5, thought=False,
           token_split_source="usage", first_answer_token_s=0.1),
        ok(mode="short", output_tokens=5, reasoning_tokens=0, answer_tokens=5, thought=False,
           token_split_source="usage", first_answer_token_s=0.3),
        fail("timeout", mode="short"),
    ]  # fmt: skip
    m = compute_metrics(records, duration_s=1.0)
    assert m.cut_off_thinking_rate == pytest.approx(0.25)  # of the 4 completed
    assert (m.split_adjusted, m.token_split_sources) == (1, {"text": 1, "tokenize": 1, "usage": 2})
    assert m.reasoning_paths == {"reasoning": 1, "think_tags": 1}
    auto, short = m.modes["auto"], m.modes["short"]
    assert auto.cut_off_thinking_rate == pytest.approx(0.5) and short.cut_off_thinking_rate == 0.0
    # Per mode, the latency distributions with percentiles (time to first answer included).
    assert short.time_to_first_answer.count == 2
    assert short.time_to_first_answer.percentiles["p95"] == pytest.approx(290.0)
    flat = short.flat()
    assert flat["p95_time_to_first_answer_ms"] == pytest.approx(290.0)
    assert flat["error_rate"] == pytest.approx(1 / 3) and flat["cut_off_thinking_rate"] == 0.0
    level = m.flat()
    assert level["cut_off_thinking_rate"] == pytest.approx(0.25) and level["split_adjusted"] == 1
    assert level["median_time_to_first_answer_ms"] == pytest.approx(300.0)


def test_no_completed_request_has_no_cut_off_rate() -> None:
    m = compute_metrics([fail("timeout")], duration_s=1.0)
    assert m.cut_off_thinking_rate is None and m.modes["default"].cut_off_thinking_rate is None
