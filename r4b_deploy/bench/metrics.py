"""Metrics: a pure function of the per-request records of one load level.

Names and definitions follow `vllm bench serve` where the meaning is the same, so results can
be compared key by key: TPOT = (latency − TTFT) / (output tokens − 1), first token excluded,
only for requests with more than one output token; ITL = gaps between streamed text chunks
(per chunk; vLLM streams one token per chunk); throughputs are totals over the level's
wall-clock duration; percentiles interpolate linearly (numpy's default); std is the
population standard deviation. Unlike vLLM, a statistic of no values is None, not 0.

Ours on top: time to first answer token (after `</think>`), reasoning and answer tokens per
thinking mode, and failures counted by kind.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import fmean, quantiles

from pydantic import BaseModel, ConfigDict

from r4b_deploy.client.records import RequestRecord

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
MEDIAN_PERCENTILE = 50
PERCENT = 100
# Latency distributions, in ms: the vLLM four, then ours.
DISTRIBUTIONS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el", "first_answer_token")
STATS: tuple[str, ...] = ("mean", "median", "std", *(f"p{p}" for p in PERCENTILES))
ERROR_SAMPLES_MAX = 5
MS_PER_S = 1000.0


class Distribution(BaseModel):
    """Summary of one latency, in milliseconds. All None when there were no values."""

    model_config = ConfigDict(frozen=True)

    count: int = 0
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    percentiles: dict[str, float | None] = {}  # "p95" -> ms


class ModeMetrics(BaseModel):
    """One thinking mode's share of a level: how long it thought, how long it answered."""

    model_config = ConfigDict(frozen=True)

    mode: str
    requests: int
    completed: int
    output_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    split_unknown: int  # completed requests whose reasoning/answer split could not be counted
    mean_output_tokens: float | None
    mean_reasoning_tokens: float | None
    mean_answer_tokens: float | None
    thought_fraction: float | None  # share of completed replies that carried reasoning
    truncated_reasoning: int  # replies cut by max_tokens inside a think block
    mean_ttft_ms: float | None
    mean_first_answer_token_ms: float | None
    median_first_answer_token_ms: float | None


class LevelMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    num_prompts: int
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    total_reasoning_tokens: int
    total_answer_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    peak_concurrency: int  # most requests in flight at once (exact, from start and end times)
    error_rate: float
    errors_by_kind: dict[str, int]
    error_samples: list[str]  # first distinct "kind: message" lines, for the report
    missing_usage: int  # completed requests whose stream carried no usage (token counts unknown)
    truncated_reasoning: int
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2el: Distribution
    first_answer_token: Distribution
    modes: dict[str, ModeMetrics]

    def flat(self) -> dict[str, float | int | None]:
        """Scalar metrics under vLLM-style names (`mean_ttft_ms`, `p95_tpot_ms`, ...): the JSON
        keys, and the names SLO gates accept."""
        out: dict[str, float | int | None] = {
            "num_prompts": self.num_prompts,
            "completed": self.completed,
            "failed": self.failed,
            "duration": self.duration_s,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_token_throughput": self.total_token_throughput,
        }
        for name in DISTRIBUTIONS:
            dist: Distribution = getattr(self, name)
            out[f"mean_{name}_ms"] = dist.mean
            out[f"median_{name}_ms"] = dist.median
            out[f"std_{name}_ms"] = dist.std
            for key, value in dist.percentiles.items():
                out[f"{key}_{name}_ms"] = value
        out["total_reasoning_tokens"] = self.total_reasoning_tokens
        out["total_answer_tokens"] = self.total_answer_tokens
        out["peak_concurrency"] = self.peak_concurrency
        out["error_rate"] = self.error_rate
        out["truncated_reasoning"] = self.truncated_reasoning
        return out


def metric_names() -> list[str]:
    """Every name `LevelMetrics.flat()` produces (valid SLO gate names)."""
    return list(compute_metrics([], 1.0).flat())


def percentiles(values: Sequence[float], ps: Iterable[int]) -> dict[int, float]:
    """The `ps` percentiles (integers 0..100) of `values`, interpolated linearly between closest
    ranks as numpy.percentile does by default: statistics.quantiles(method="inclusive") cuts at
    the same points, and its ends are the smallest and largest value."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    inner = [data[0]] * (PERCENT - 1) if len(data) == 1 else quantiles(data, n=PERCENT, method="inclusive")
    cuts = [data[0], *inner, data[-1]]
    return {p: cuts[p] for p in ps}


def percentile(values: Sequence[float], p: int) -> float:
    return percentiles(values, (p,))[p]


def distribution(values_s: Iterable[float]) -> Distribution:
    """Summarise seconds as milliseconds."""
    values = [v * MS_PER_S for v in values_s]
    if not values:
        return Distribution(percentiles={f"p{p}": None for p in PERCENTILES})
    n = len(values)
    mean = fmean(values)
    # By hand, not statistics.pstdev: that one sums exact fractions, ~6x the CPU on a level's ITLs.
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    cuts = percentiles(values, (MEDIAN_PERCENTILE, *PERCENTILES))
    return Distribution(
        count=n,
        mean=mean,
        median=cuts[MEDIAN_PERCENTILE],
        std=std,
        percentiles={f"p{p}": cuts[p] for p in PERCENTILES},
    )


def tpot_s(record: RequestRecord) -> float | None:
    """Time per output token after the first; None when it is undefined (≤ 1 token, no TTFT)."""
    if not record.success or record.ttft_s is None or not record.output_tokens or record.output_tokens <= 1:
        return None
    return (record.latency_s - record.ttft_s) / (record.output_tokens - 1)


def _peak_concurrency(records: Sequence[RequestRecord]) -> int:
    events: list[tuple[float, int]] = []
    for r in records:
        events.append((r.start_s, 1))
        events.append((r.start_s + r.latency_s, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _mean(values: list[float] | list[int]) -> float | None:
    return fmean(values) if values else None


def _mode_metrics(mode: str, records: list[RequestRecord]) -> ModeMetrics:
    done = [r for r in records if r.success]
    split = [r for r in done if r.reasoning_tokens is not None and r.answer_tokens is not None]
    with_output = [r.output_tokens for r in done if r.output_tokens is not None]
    first_answer = sorted(r.first_answer_token_s * MS_PER_S for r in done if r.first_answer_token_s is not None)
    thought = [r.thought for r in done if r.thought is not None]
    ttfts = [r.ttft_s * MS_PER_S for r in done if r.ttft_s is not None]
    return ModeMetrics(
        mode=mode,
        requests=len(records),
        completed=len(done),
        output_tokens=sum(with_output),
        reasoning_tokens=sum(r.reasoning_tokens or 0 for r in split),
        answer_tokens=sum(r.answer_tokens or 0 for r in split),
        split_unknown=len(done) - len(split),
        mean_output_tokens=_mean(with_output),
        mean_reasoning_tokens=_mean([r.reasoning_tokens or 0 for r in split]),
        mean_answer_tokens=_mean([r.answer_tokens or 0 for r in split]),
        thought_fraction=(sum(thought) / len(thought)) if thought else None,
        truncated_reasoning=sum(1 for r in done if r.truncated_reasoning),
        mean_ttft_ms=_mean(ttfts),
        mean_first_answer_token_ms=_mean(first_answer),
        median_first_answer_token_ms=percentile(first_answer, MEDIAN_PERCENTILE) if first_answer else None,
    )


def compute_metrics(records: Sequence[RequestRecord], duration_s: float) -> LevelMetrics:
    """The level's metrics from its records and its wall-clock duration (first send to last end)."""
    done = [r for r in records if r.success]
    failed = [r for r in records if not r.success]
    input_tokens = sum(r.prompt_tokens or 0 for r in done)
    output_tokens = sum(r.output_tokens or 0 for r in done)
    dur = duration_s if duration_s > 0 else math.nan
    errors = Counter(r.error_kind or "unknown" for r in failed)
    samples: list[str] = []
    for r in failed:
        line = f"{r.error_kind}: {r.error}"
        if line not in samples:
            samples.append(line)
        if len(samples) >= ERROR_SAMPLES_MAX:
            break
    modes: dict[str, list[RequestRecord]] = {}
    for r in records:
        modes.setdefault(r.mode or "default", []).append(r)
    itls = [gap for r in done for gap in r.itl_s]
    return LevelMetrics(
        num_prompts=len(records),
        completed=len(done),
        failed=len(failed),
        duration_s=duration_s,
        total_input_tokens=input_tokens,
        total_output_tokens=output_tokens,
        total_reasoning_tokens=sum(r.reasoning_tokens or 0 for r in done),
        total_answer_tokens=sum(r.answer_tokens or 0 for r in done),
        request_throughput=_rate(len(done), dur),
        output_throughput=_rate(output_tokens, dur),
        total_token_throughput=_rate(input_tokens + output_tokens, dur),
        peak_concurrency=_peak_concurrency(records),
        error_rate=len(failed) / len(records) if records else 0.0,
        errors_by_kind=dict(sorted(errors.items())),
        error_samples=samples,
        missing_usage=sum(1 for r in done if r.output_tokens is None),
        truncated_reasoning=sum(1 for r in done if r.truncated_reasoning),
        ttft=distribution(r.ttft_s for r in done if r.ttft_s is not None),
        tpot=distribution(t for r in done if (t := tpot_s(r)) is not None),
        itl=distribution(itls),
        e2el=distribution(r.latency_s for r in done),
        first_answer_token=distribution(r.first_answer_token_s for r in done if r.first_answer_token_s is not None),
        modes={mode: _mode_metrics(mode, recs) for mode, recs in sorted(modes.items())},
    )


def _rate(count: float, duration_s: float) -> float:
    return 0.0 if math.isnan(duration_s) else count / duration_s
