"""Replies that arrive in one burst: told apart from real streams, counted per mode, and said in
the result's warnings, hence in the Markdown, the terminal summary and the HTML page."""

from __future__ import annotations

import pytest
from support import bench_report

from r4b_deploy.bench.metrics import (
    BURST_GAP_S,
    BURST_MIN_GAPS,
    burst_reply,
    compute_metrics,
    metric_names,
    mode_metric_names,
)
from r4b_deploy.bench.report import BenchReport, LevelResult
from r4b_deploy.bench.schedule import LoadLevel
from r4b_deploy.bench.trust import BURST_WARN_RATE, level_warnings
from r4b_deploy.client.records import RequestRecord

TOKENS = 64
PARSE_GAP_S = BURST_GAP_S / 20  # chunks already in the socket: parsed back to back
DECODE_GAP_S = 0.01  # a real decode step


def reply(ttft_s: float, gaps: list[float], mode: str = "auto", **changes: object) -> RequestRecord:
    tokens = len(gaps) + 1
    record = RequestRecord(
        success=True, mode=mode, ttft_s=ttft_s, latency_s=ttft_s + sum(gaps), itl_s=gaps, output_tokens=tokens,
        reasoning_tokens=0, answer_tokens=tokens, token_split_source="usage",
    )  # fmt: skip
    return record.replace(**changes)


def burst(mode: str = "auto", ttft_s: float = 0.3) -> RequestRecord:
    """What the 2-core machine measured: TTFT ≈ E2E, TPOT 0.01 ms."""
    return reply(ttft_s, [PARSE_GAP_S] * (TOKENS - 1), mode)


def streamed(mode: str = "auto") -> RequestRecord:
    return reply(0.05, [DECODE_GAP_S] * (TOKENS - 1), mode)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (burst(), True),
        (burst(ttft_s=0.009), True),  # the fast runs of the report: 9 ms TTFT, still one burst
        (streamed(), False),
        # Several tokens per engine step: most gaps zero, but the first token came early.
        (reply(0.05, [PARSE_GAP_S, PARSE_GAP_S, PARSE_GAP_S, DECODE_GAP_S] * 16), False),
        # A long prefill before a short answer: TTFT ≈ E2E, but the gaps are decode steps.
        (reply(0.5, [DECODE_GAP_S] * BURST_MIN_GAPS), False),
        # Too short to tell, failed: not counted as bursts.
        (reply(0.3, [PARSE_GAP_S] * (BURST_MIN_GAPS - 1)), False),
        (burst().replace(success=False, error_kind="stream"), False),
        (burst().replace(ttft_s=None), False),
    ],
    ids=["burst", "fast-burst", "streamed", "multi-token-steps", "long-prefill", "too-short", "failed", "no-ttft"],
)
def test_a_burst_is_most_gaps_near_zero_and_ttft_near_e2e(record: RequestRecord, expected: bool) -> None:
    assert burst_reply(record) is expected


def test_burst_rate_per_mode_and_per_level() -> None:
    records = [burst("auto"), burst("auto"), burst("auto"), streamed("auto"), streamed("short"), streamed("short")]
    m = compute_metrics(records, duration_s=1.0)
    assert (m.burst_replies, m.burst_rate) == (3, pytest.approx(0.5))
    assert (m.modes["auto"].burst_replies, m.modes["auto"].burst_rate) == (3, pytest.approx(0.75))
    assert (m.modes["short"].burst_replies, m.modes["short"].burst_rate) == (0, 0.0)
    # In the JSON under its own name, and a gate may name it (max_burst_rate=0.05).
    assert m.flat()["burst_rate"] == pytest.approx(0.5) and m.flat()["burst_replies"] == 3
    assert "burst_rate" in metric_names() and "burst_rate" in mode_metric_names()
    assert compute_metrics([], duration_s=1.0).burst_rate is None


def level(records: list[RequestRecord], label: str = "mix, c=4", cpu_fraction: float = 0.05) -> LevelResult:
    return LevelResult(
        load=LoadLevel(kind="concurrency", concurrency=4),
        label=label,
        mode="mix",
        metrics=compute_metrics(records, duration_s=1.0),
        client_cpu_s=cpu_fraction,
        client_cpu_fraction=cpu_fraction,
        records=records,
    )


def test_the_warning_names_the_level_the_mode_and_the_share() -> None:
    records = [burst("auto")] * 3 + [streamed("auto"), *[streamed("short")] * 4]
    warnings = level_warnings(level(records, cpu_fraction=0.95))
    assert "the client used 95% of a core" in warnings[0]  # next to the CPU warning
    (line,) = [w for w in warnings if "burst" in w]
    assert line.startswith("mix, c=4 (auto mode): 3 of 4 replies (75%) arrived in one burst")
    assert "TTFT is the whole reply's time" in line and "short mode" not in " ".join(warnings)


def test_one_mode_level_names_the_level_only_and_a_rare_burst_is_not_warned() -> None:
    (line,) = level_warnings(level([burst("long")] * 2, label="long, c=4"))
    assert line.startswith("long, c=4: 2 of 2 replies (100%) arrived in one burst")
    share_below = int(BURST_WARN_RATE * 100) - 1  # bursts per 100 replies, just under the threshold
    rare = [burst("long")] * share_below + [streamed("long")] * (100 - share_below)
    assert level_warnings(level(rare, label="long, c=4")) == []


def burst_report() -> BenchReport:
    lv = level([burst("auto")] * 4, label="c=4")
    return bench_report([lv], mode="auto", max_tokens=TOKENS, warnings=level_warnings(lv))


def test_the_warning_reaches_the_markdown_the_summary_and_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    from r4b_deploy.bench.writers import render_markdown
    from r4b_deploy.cli.bench_summary import print_summary
    from r4b_deploy.report.page import render_report_html

    report = burst_report()
    (warning,) = report.warnings
    assert "arrived in one burst" in warning
    assert f"- {warning}" in render_markdown(report)
    print_summary(report, stderr=False)
    assert "arrived in one burst" in " ".join(capsys.readouterr().out.split())
    page = render_report_html(bench=report)
    assert "4 of 4 replies (100%) arrived in one burst" in page
    assert 'data-key="levels.0.burst_rate" data-value="1.0"' in page  # a headline figure
