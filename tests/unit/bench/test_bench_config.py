"""BenchConfig: thinking modes are a sweep axis like the load levels."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from r4b_deploy.bench.config import BenchConfig

URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("given", "modes"),
    [
        ({}, ["auto"]),
        ({"mode": "long"}, ["long"]),
        ({"mode": "auto, short"}, ["auto", "short"]),
        ({"modes": ["short", "mix", "short"]}, ["short", "mix"]),  # a mode named twice runs once
    ],
)
def test_modes(given: dict, modes: list[str]) -> None:
    assert BenchConfig(base_url=URL, **given).modes == modes


@pytest.mark.parametrize("given", [{"modes": []}, {"mode": "deep"}])
def test_bad_modes_are_refused(given: dict) -> None:
    with pytest.raises(ValidationError):
        BenchConfig(base_url=URL, **given)


def test_every_mode_runs_every_level_and_the_time_bound_counts_them() -> None:
    one = BenchConfig(base_url=URL, concurrencies=[1, 4], requests_per_level=8)
    three = one.model_copy(update={"modes": ["auto", "long", "short"]})
    assert [(m, lv.concurrency) for m, lv in three.sweep()] == [
        (m, c) for m in ("auto", "long", "short") for c in (1, 4)
    ]
    preflight = 2 * one.timeout_s  # pre-flight and warm-up
    assert three.time_bound_s() - preflight == pytest.approx(3 * (one.time_bound_s() - preflight))
