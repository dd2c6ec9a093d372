"""Metrics: a pure function of the per-request records of one load level.

Names and definitions follow `vllm bench serve` where the meaning is the same, so results can
be compared key by key: TPOT = (latency − TTFT) / (output tokens − 1), first token excluded,
only for requests with more than one output token; ITL = gaps between streamed text chunks
(per chunk; vLLM streams one token per chunk); throughputs are totals over the level's
wall-clock duration; percentiles interpolate linearly (numpy's default); std is the
population standard deviation. Unlike vLLM, a statistic of no values is None, not 0.

Ours on top: time to first answer token (`time_to_first_answer`: the first content token after
the reasoning, what other tools call time to first output token), reasoning and answer tokens
per thinking mode with where their split came from, the share of replies cut off while still
thinking (`cut_off_thinking_rate`: the token limit hit inside the think block, no answer at
all), the share of replies that arrived in one burst (`burst_rate`, see `burst_reply`), and
failures counted by kind.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import fmean

from pydantic import BaseModel, ConfigDict

from r4b_deploy.client.records import RequestRecord

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
MEDIAN_PERCENTILE = 50
PERCENT = 100
# Latency distributions, in ms: the vLLM four, then ours.
DISTRIBUTIONS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el", "time_to_first_answer")
# Per thinking mode, all but ITL (a level's largest list: not copied a second time per mode).
MODE_DISTRIBUTIONS: tuple[str, ...] = ("ttft", "tpot", "e2el", "time_to_first_answer")
CUT_OFF_RATE = "cut_off_thinking_rate"
STATS: tuple[str, ...] = ("mean", "median", "std", *(f"p{p}" for p in PERCENTILES))
ERROR_SAMPLES_MAX = 5
MS_PER_S = 1000.0
BURST_RATE = "burst_rate"
# A reply "arrived in one burst" when its tokens were held back and came out together (a proxy
# that buffers the stream, a server starved of CPU writing the whole reply at once, a client
# that could not read): its TTFT is then the time to the whole reply and its TPOT and ITLs are
# the client parsing chunks it already had, not decoding. Seen on a 2-core machine: p50 TTFT
# 9-17 ms in one run and 276-514 ms in the next, identical runs, TPOT 0.01 ms.
BURST_GAP_S = 0.0005  # a gap below it is parsing, not a decode step (R-4B's is >= 2 ms on an H200)
BURST_GAP_SHARE = 0.5  # "most gaps": more than this share of a reply's gaps below BURST_GAP_S
# "TTFT ≈ E2E": the first token came after this share of the reply's time. Half, not nearly all:
# parsing 64 chunks at 25 µs each is 1.6 ms after a 9 ms TTFT (85 %); a server sending several
# tokens per step has gaps near zero too, but its first token comes early.
BURST_TTFT_SHARE = 0.5
BURST_MIN_GAPS = 3  # a shorter stream cannot tell a burst from a fast short answer


class Distribution(BaseModel):
    """Summary of one latency, in milliseconds. All None when there were no values."""

    model_config = ConfigDict(frozen=True)

    count: int = 0
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    percentiles: dict[str, float | None] = {}  # "p95" -> ms


def _flat_distributions(owner: BaseModel, names: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in names:
        dist: Distribution = getattr(owner, name)
        out[f"mean_{name}_ms"] = dist.mean
        out[f"median_{name}_ms"] = dist.median
        out[f"std_{name}_ms"] = dist.std
        for key, value in dist.percentiles.items():
            out[f"{key}_{name}_ms"] = value
    return out


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
    truncated_reasoning: int  # replies cut off while thinking: max_tokens inside the think block, no answer
    cut_off_thinking_rate: float | None  # truncated_reasoning / completed
    split_adjusted: int  # replies whose usage split contradicted the text (counted from the text)
    reasoning_paths: dict[str, int]  # where the reasoning came from: field name or "think_tags"
    burst_replies: int = 0  # completed replies that arrived in one burst (`burst_reply`)
    burst_rate: float | None = None  # burst_replies / completed: their latencies are not the server's
    mean_input_tokens: float | None = None  # usage.prompt_tokens: what the server counted, template included
    median_input_tokens: float | None = None
    mean_ttft_ms: float | None
    mean_first_answer_token_ms: float | None
    median_first_answer_token_ms: float | None
    ttft: Distribution
    tpot: Distribution
    e2el: Distribution
    time_to_first_answer: Distribution

    def flat(self) -> dict[str, float | int | None]:
        """This mode's gateable figures, under the level's names (`short:p95_ttft_ms=300`)."""
        out: dict[str, float | int | None] = {
            "num_prompts": self.requests,
            "completed": self.completed,
            "error_rate": (self.requests - self.completed) / self.requests if self.requests else 0.0,
            "thought_fraction": self.thought_fraction,
            CUT_OFF_RATE: self.cut_off_thinking_rate,
            "mean_reasoning_tokens": self.mean_reasoning_tokens,
            "mean_answer_tokens": self.mean_answer_tokens,
            "mean_input_tokens": self.mean_input_tokens,
            "median_input_tokens": self.median_input_tokens,
            BURST_RATE: self.burst_rate,
        }
        out.update(_flat_distributions(self, MODE_DISTRIBUTIONS))
        return out


class LevelMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    num_prompts: int
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    mean_input_tokens: float | None = None  # per completed request, as the server counted (usage.prompt_tokens)
    median_input_tokens: float | None = None
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
    truncated_reasoning: int  # completed replies cut off while thinking
    cut_off_thinking_rate: float | None  # truncated_reasoning / completed (None: none completed)
    split_adjusted: int  # replies whose usage split contradicted the text received
    token_split_sources: dict[str, int]  # "usage", "text", "tokenize" -> replies (unknown ones left out)
    reasoning_paths: dict[str, int]  # "reasoning", "reasoning_content", "think_tags" -> replies
    burst_replies: int = 0  # completed replies that arrived in one burst (`burst_reply`)
    burst_rate: float | None = None  # burst_replies / completed (None: none completed)
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2el: Distribution
    time_to_first_answer: Distribution
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
            "mean_input_tokens": self.mean_input_tokens,
            "median_input_tokens": self.median_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_token_throughput": self.total_token_throughput,
        }
        out.update(_flat_distributions(self, DISTRIBUTIONS))
        out["total_reasoning_tokens"] = self.total_reasoning_tokens
        out["total_answer_tokens"] = self.total_answer_tokens
        out["peak_concurrency"] = self.peak_concurrency
        out["error_rate"] = self.error_rate
        out["truncated_reasoning"] = self.truncated_reasoning
        out[CUT_OFF_RATE] = self.cut_off_thinking_rate
        out["split_adjusted"] = self.split_adjusted
        out["burst_replies"] = self.burst_replies
        out[BURST_RATE] = self.burst_rate
        return out


def metric_names() -> list[str]:
    """Every name `LevelMetrics.flat()` produces (valid SLO gate names)."""
    return list(compute_metrics([], 1.0).flat())


def mode_metric_names() -> list[str]:
    """Every name `ModeMetrics.flat()` produces (valid names of a per-mode gate, `short:NAME=X`)."""
    return list(_mode_metrics("auto", []).flat())


def percentiles(values: Sequence[float], ps: Iterable[int]) -> dict[int, float]:
    """The `ps` percentiles (integers 0..100) of `values`, interpolated linearly between closest
    ranks as numpy.percentile does by default. The arithmetic is statistics.quantiles'
    (method="inclusive") for just the cuts asked for: it would sort a second copy of a level's
    ITLs (one per token of every request) to compute 99 cuts."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    last = len(data) - 1
    cuts: dict[int, float] = {}
    for p in ps:
        if p <= 0 or last == 0:
            cuts[p] = data[0]
        elif p >= PERCENT:
            cuts[p] = data[-1]
        else:
            j, delta = divmod(p * last, PERCENT)
            cuts[p] = (data[j] * (PERCENT - delta) + data[j + 1] * delta) / PERCENT
    return cuts


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


def burst_reply(record: RequestRecord) -> bool:
    """Did this reply arrive in one burst: most gaps between its chunks near zero, and its first
    token at (nearly) the end? Both, so that a server streaming several tokens per step (most
    gaps zero, TTFT short) or a long prefill before a short answer (TTFT ≈ E2E, real gaps) is
    not one."""
    gaps = record.itl_s
    if not record.success or record.ttft_s is None or len(gaps) < BURST_MIN_GAPS:
        return False
    if record.ttft_s < BURST_TTFT_SHARE * record.latency_s:  # the cheap test first: most replies stop here
        return False
    return sum(1 for gap in gaps if gap < BURST_GAP_S) > BURST_GAP_SHARE * len(gaps)


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
    first_answer_s = [r.first_answer_token_s for r in done if r.first_answer_token_s is not None]
    first_answer = sorted(t * MS_PER_S for t in first_answer_s)
    thought = [r.thought for r in done if r.thought is not None]
    ttfts = [r.ttft_s * MS_PER_S for r in done if r.ttft_s is not None]
    cut_off = sum(1 for r in done if r.truncated_reasoning)
    bursts = sum(1 for r in done if burst_reply(r))
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
        truncated_reasoning=cut_off,
        cut_off_thinking_rate=cut_off / len(done) if done else None,
        split_adjusted=sum(1 for r in done if r.split_adjusted),
        reasoning_paths=_counts(r.reasoning_path for r in done),
        burst_replies=bursts,
        burst_rate=bursts / len(done) if done else None,
        **_input_tokens(done),
        mean_ttft_ms=_mean(ttfts),
        mean_first_answer_token_ms=_mean(first_answer),
        median_first_answer_token_ms=percentile(first_answer, MEDIAN_PERCENTILE) if first_answer else None,
        ttft=distribution(r.ttft_s for r in done if r.ttft_s is not None),
        tpot=distribution(t for r in done if (t := tpot_s(r)) is not None),
        e2el=distribution(r.latency_s for r in done),
        time_to_first_answer=distribution(first_answer_s),
    )


def _input_tokens(done: list[RequestRecord]) -> dict[str, float | None]:
    """Mean and median prompt tokens as the server counted them (requests without usage left out)."""
    counts = [r.prompt_tokens for r in done if r.prompt_tokens is not None]
    return {
        "mean_input_tokens": _mean(counts),
        "median_input_tokens": percentile(counts, MEDIAN_PERCENTILE) if counts else None,
    }


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    """How often each value occurs, None left out, in name order (JSON stays stable)."""
    return dict(sorted(Counter(v for v in values if v is not None).items()))


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
    cut_off = sum(1 for r in done if r.truncated_reasoning)
    itls = array("d")  # 8 bytes a gap: a level has one per token of every request
    for r in done:
        itls.extend(r.itl_s)
    mode_metrics = {mode: _mode_metrics(mode, recs) for mode, recs in sorted(modes.items())}
    bursts = sum(mm.burst_replies for mm in mode_metrics.values())
    return LevelMetrics(
        num_prompts=len(records),
        completed=len(done),
        failed=len(failed),
        duration_s=duration_s,
        total_input_tokens=input_tokens,
        **_input_tokens(done),
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
        truncated_reasoning=cut_off,
        cut_off_thinking_rate=cut_off / len(done) if done else None,
        split_adjusted=sum(1 for r in done if r.split_adjusted),
        token_split_sources=_counts(r.token_split_source for r in done),
        reasoning_paths=_counts(r.reasoning_path for r in done),
        burst_replies=bursts,
        burst_rate=bursts / len(done) if done else None,
        ttft=distribution(r.ttft_s for r in done if r.ttft_s is not None),
        tpot=distribution(t for r in done if (t := tpot_s(r)) is not None),
        itl=distribution(itls),
        e2el=distribution(r.latency_s for r in done),
        time_to_first_answer=distribution(r.first_answer_token_s for r in done if r.first_answer_token_s is not None),
        modes=mode_metrics,
    )


def _rate(count: float, duration_s: float) -> float:
    return 0.0 if math.isnan(duration_s) else count / duration_s
