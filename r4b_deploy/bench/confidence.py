"""Confidence intervals for gated metrics, so a gate can tell a breach from noise.

A level's figures come from a handful of runs (`--repeat N`) of a few dozen requests each; a p95
from 32 requests moves a lot between identical runs. The interval is a percentile bootstrap,
two-stage because runs differ more than requests within a run do: resample the runs with
replacement, then the requests within each chosen run, and recompute the level's metrics from
that sample (`compute_metrics`, the same pure function the report uses). Stdlib `random` with a
fixed seed: the same records always give the same interval. The resample count is bounded so
judging stays cheap beside the load it judges.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from r4b_deploy.bench.metrics import LevelMetrics, compute_metrics
from r4b_deploy.client.records import RequestRecord

CONFIDENCE = 0.95  # two-sided: the gate's verdict is wrong about one time in 40 on each side
BOOTSTRAP_RESAMPLES = 200  # enough for a 95% interval's ends to settle; each costs one compute_metrics


class RunSlice(BaseModel):
    """One repeat of a level: its requests are `records[start:start + requests]` of the level."""

    model_config = ConfigDict(frozen=True)

    requests: int
    duration_s: float


class Interval(BaseModel):
    model_config = ConfigDict(frozen=True)

    low: float
    high: float
    confidence: float


Extract = Callable[[LevelMetrics], float | None]


def bootstrap_intervals(
    records: Sequence[RequestRecord],
    runs: Sequence[RunSlice],
    extracts: dict[str, Extract],
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict[str, Interval | None]:
    """An interval per named extract (a metric of the resampled level); None where the metric had
    no value in too many resamples to say (e.g. no successful request) or there are no records.
    `runs` split `records` into the level's repeats (one run: all of them)."""
    if not records or not runs or not extracts:
        return dict.fromkeys(extracts)
    slices, start = [], 0
    for run in runs:
        slices.append((list(records[start : start + run.requests]), run.duration_s))
        start += run.requests
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in extracts}
    for _ in range(resamples):
        chosen = [rng.choice(slices) for _ in slices]
        sample: list[RequestRecord] = []
        for recs, _ in chosen:
            sample.extend(rng.choices(recs, k=len(recs)))
        metrics = compute_metrics(sample, sum(d for _, d in chosen))
        for name, extract in extracts.items():
            value = extract(metrics)
            if value is not None and math.isfinite(value):
                samples[name].append(float(value))
    tail = (1 - confidence) / 2
    out: dict[str, Interval | None] = {}
    for name, values in samples.items():
        if len(values) < resamples * confidence:  # the metric is missing too often to bound it
            out[name] = None
            continue
        values.sort()
        out[name] = Interval(low=_quantile(values, tail), high=_quantile(values, 1 - tail), confidence=confidence)
    return out


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def runs_to_decide(runs: int, value: float, interval: Interval, threshold: float) -> int | None:
    """About how many runs in all would put the whole interval on one side of `threshold`: the
    interval's half-width shrinks about as 1/sqrt(runs). None when the figure sits on the limit
    (no number of runs would decide it)."""
    distance = abs(value - threshold)
    if distance == 0:
        return None
    half_width = max(value - interval.low, interval.high - value)
    return max(runs + 1, math.ceil(runs * (half_width / distance) ** 2))
