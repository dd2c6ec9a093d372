"""A BenchReport built from handmade records, for the writer, chart and SLO tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support import bench_report

from r4b_deploy.bench.metrics import compute_metrics
from r4b_deploy.bench.report import BenchReport, LevelResult
from r4b_deploy.bench.schedule import LoadLevel
from r4b_deploy.client.records import RequestRecord


def _records(scale: float, failures: int) -> list[RequestRecord]:
    recs = []
    for i in range(8):
        recs.append(
            RequestRecord(
                success=True,
                mode="long" if i % 2 else "short",
                start_s=i * 0.1,
                latency_s=1.0 * scale,
                ttft_s=0.05 * scale,
                first_answer_token_s=0.5 * scale if i % 2 else 0.05 * scale,
                itl_s=[0.01 * scale] * 9,
                prompt_tokens=64,
                output_tokens=10,
                reasoning_tokens=6 if i % 2 else 0,
                answer_tokens=4 if i % 2 else 10,
                finish_reason="stop",
                thought=bool(i % 2),
            )
        )
    recs += [
        RequestRecord(success=False, error_kind="http_5xx", error="HTTP 500: fake", mode="short")
        for _ in range(failures)
    ]
    return recs


def build_report(failures: int = 0) -> BenchReport:
    levels = []
    for conc, scale in ((1, 1.0), (4, 2.0)):
        recs = _records(scale, failures)
        levels.append(
            LevelResult(
                load=LoadLevel(kind="concurrency", concurrency=conc),
                label=f"concurrency {conc}",
                metrics=compute_metrics(recs, duration_s=2.0 / conc),
                client_cpu_s=0.1,
                client_cpu_fraction=0.05,
                records=recs,
            )
        )
    return bench_report(levels, warmup_requests=4, warnings=["an example warning"])


@pytest.fixture
def make_report() -> Callable[..., BenchReport]:
    return build_report
