"""Arrival schedules: when each request of a load level is sent.

Two shapes, as in `vllm bench serve` and GuideLLM:
- closed loop (`concurrency N`): N workers, each sends its next request when the last one ends;
  there is no schedule, only a request budget.
- open loop (`rate R`): requests arrive on their own clock, independent of the server's speed.
  Gaps are gamma-distributed with shape `burstiness` and mean 1/R: burstiness 1 is a Poisson
  process, < 1 burstier, > 1 more regular, `inf` evenly spaced. R = inf sends all at once.

Pure functions of (rate, burstiness, count, seed), so a schedule can be replayed exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r4b_deploy.errors import UsageError

LEVEL_MAX_S = 24 * 3600.0  # a level planned to last longer than a day is a typo, not a benchmark


class LoadLevel(BaseModel):
    """One point of the sweep. `max_concurrency` caps in-flight requests of an open-loop level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["concurrency", "rate"]
    concurrency: int | None = Field(default=None, gt=0)  # closed loop: in-flight requests
    request_rate: float | None = Field(default=None, gt=0)  # open loop: requests/s (math.inf: all at once)
    burstiness: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_shape(self) -> LoadLevel:
        if self.kind == "concurrency" and self.concurrency is None:
            raise ValueError("a concurrency level needs `concurrency`")
        if self.kind == "rate" and self.request_rate is None:
            raise ValueError("a rate level needs `request_rate`")
        return self

    @property
    def label(self) -> str:
        if self.kind == "concurrency":
            return f"concurrency {self.concurrency}"
        rate = "inf" if self.request_rate == math.inf else f"{self.request_rate:g}/s"
        cap = f", max {self.max_concurrency}" if self.max_concurrency else ""
        return f"rate {rate}{cap}"

    @property
    def in_flight_limit(self) -> int | None:
        """The most requests this level can have open at once (None: unbounded)."""
        return self.concurrency if self.kind == "concurrency" else self.max_concurrency


def interarrival_gaps_s(request_rate: float, burstiness: float, rng: random.Random) -> Iterator[float]:
    """Endless gaps between arrivals: gamma(shape=burstiness, scale=1/(rate*burstiness)), mean 1/rate."""
    if request_rate <= 0 or burstiness <= 0:
        raise UsageError(f"request rate and burstiness must be > 0 (got {request_rate}, {burstiness})")
    if request_rate == math.inf:
        while True:
            yield 0.0
    if burstiness == math.inf:
        while True:
            yield 1.0 / request_rate
    scale = 1.0 / (request_rate * burstiness)
    while True:
        yield rng.gammavariate(burstiness, scale)


def arrival_offsets_s(request_rate: float, burstiness: float, count: int, seed: int) -> list[float]:
    """Send times (seconds after the level starts) of `count` requests; the first leaves at 0.

    Unlike vLLM, the offsets are not rescaled to end exactly at count/rate: the sum of random
    gaps is what a real Poisson client would produce, and the measured duration is reported.
    """
    if count <= 0:
        return []
    gaps = interarrival_gaps_s(request_rate, burstiness, random.Random(seed))
    offsets = [0.0]
    for _ in range(count - 1):
        offsets.append(offsets[-1] + next(gaps))
    return offsets


def sweep_levels(
    concurrencies: list[int] | None,
    request_rates: list[float] | None,
    burstiness: float,
    cap: int | None,
    default_concurrencies: tuple[int, ...],
) -> list[LoadLevel]:
    """The levels to run, in order: closed-loop concurrencies, then open-loop rates.

    `cap` (--max-concurrency, or the plan's max_num_seqs) drops the concurrencies above it and
    adds the cap itself as the last level, so a sweep always reaches the server's limit; it also
    bounds the in-flight requests of each rate level.
    """
    levels: list[LoadLevel] = []
    if not concurrencies and not request_rates:
        concurrencies = list(default_concurrencies)
    if concurrencies:
        wanted = sorted(set(concurrencies))
        if cap is not None:
            kept = [c for c in wanted if c <= cap]
            if len(kept) < len(wanted) and cap not in kept:
                kept.append(cap)
            wanted = kept
        levels += [LoadLevel(kind="concurrency", concurrency=c) for c in wanted]
    for rate in request_rates or []:
        levels.append(LoadLevel(kind="rate", request_rate=rate, burstiness=burstiness, max_concurrency=cap))
    return levels
