"""Arrival schedules: Poisson mean rate, burstiness, seeds, sweeps."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from r4b_deploy.bench.schedule import LoadLevel, arrival_offsets_s, interarrival_gaps_s, sweep_levels
from r4b_deploy.errors import UsageError

N = 20_000


def _gaps(rate: float, burstiness: float, seed: int = 1) -> list[float]:
    offsets = arrival_offsets_s(rate, burstiness, N, seed)
    return [b - a for a, b in itertools.pairwise(offsets)]


@pytest.mark.parametrize("rate", [0.5, 4.0, 200.0])
def test_poisson_mean_gap_is_one_over_rate(rate: float) -> None:
    gaps = _gaps(rate, 1.0)
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.03)
    # Exponential gaps: standard deviation equals the mean.
    assert statistics.pstdev(gaps) == pytest.approx(1 / rate, rel=0.05)


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_burstiness_keeps_the_rate_and_sets_the_spread(burstiness: float) -> None:
    gaps = _gaps(10.0, burstiness)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.1, rel=0.04)
    # Gamma with shape k: coefficient of variation 1/sqrt(k). Below 1 burstier, above more regular.
    assert statistics.pstdev(gaps) / mean == pytest.approx(1 / math.sqrt(burstiness), rel=0.06)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    a = arrival_offsets_s(5.0, 1.0, 100, seed=7)
    assert a == arrival_offsets_s(5.0, 1.0, 100, seed=7)
    assert a != arrival_offsets_s(5.0, 1.0, 100, seed=8)


def test_offsets_start_at_zero_and_never_go_back() -> None:
    offsets = arrival_offsets_s(3.0, 0.5, 500, seed=0)
    assert offsets[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(offsets))
    assert arrival_offsets_s(3.0, 1.0, 0, seed=0) == []


def test_infinite_rate_sends_everything_at_once() -> None:
    assert arrival_offsets_s(math.inf, 1.0, 5, seed=0) == [0.0] * 5


def test_infinite_burstiness_is_evenly_spaced() -> None:
    assert arrival_offsets_s(4.0, math.inf, 4, seed=0) == [0.0, 0.25, 0.5, 0.75]


def test_bad_rate_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        next(interarrival_gaps_s(0.0, 1.0, random.Random(0)))


def test_default_sweep_and_cap() -> None:
    default = (1, 4, 16, 64)
    levels = sweep_levels(None, None, 1.0, None, default)
    assert [lv.concurrency for lv in levels] == [1, 4, 16, 64]
    # A cap (max_num_seqs) drops the levels above it and adds itself as the last one.
    capped = sweep_levels(None, None, 1.0, 10, default)
    assert [lv.concurrency for lv in capped] == [1, 4, 10]
    assert [lv.concurrency for lv in sweep_levels(None, None, 1.0, 16, default)] == [1, 4, 16]
    assert [lv.concurrency for lv in sweep_levels([8, 2, 8], None, 1.0, None, default)] == [2, 8]


def test_rate_levels_carry_burstiness_and_cap() -> None:
    levels = sweep_levels(None, [2.0, math.inf], 0.5, 32, (1,))
    assert [lv.kind for lv in levels] == ["rate", "rate"]
    assert levels[0].burstiness == 0.5 and levels[0].max_concurrency == 32
    assert levels[0].label == "rate 2/s, max 32"
    assert levels[1].label == "rate inf, max 32"
    assert levels[1].in_flight_limit == 32


def test_level_needs_its_number() -> None:
    with pytest.raises(ValueError):
        LoadLevel(kind="concurrency")
    assert LoadLevel(kind="concurrency", concurrency=4).label == "concurrency 4"
