"""Prompt sets with a difficulty axis, the chart they draw, and sizing prompts in the server's tokens."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from r4b_deploy.bench.config import BenchConfig
from r4b_deploy.bench.prompts import PROMPT_SETS, set_prompt
from r4b_deploy.bench.workload import (
    CALIBRATION_CALLS,
    WorkloadSpec,
    calibrate_prompt_words,
    prepare_requests,
    user_messages,
)
from r4b_deploy.client.images import (
    CHART_BACKGROUND_RGB,
    CHART_BAR_RGB,
    CHART_GRID_RGB,
    CHART_MAX_VALUE,
    bar_chart_png,
)
from r4b_deploy.errors import UsageError


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Rows of RGB bytes from one of our PNGs (one IDAT, filter 0 per row)."""
    width, height = struct.unpack(">II", png[16:24])
    idat_len = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41 : 41 + idat_len])
    stride = 1 + width * 3
    return width, height, [raw[y * stride + 1 : (y + 1) * stride] for y in range(height)]


def _column_height_units(rows: list[bytes], x: int, unit_px: int) -> int:
    bar = bytes(CHART_BAR_RGB)
    filled = sum(1 for row in rows if row[x * 3 : x * 3 + 3] == bar)
    return filled // unit_px


def test_a_chart_draws_each_bar_to_its_value_on_a_unit_grid() -> None:
    values = [3, 7, 5]
    width, height, rows = _pixels(bar_chart_png(values, 300, 220))
    unit_px = height // (CHART_MAX_VALUE + 1)
    slot_px = width // len(values)
    assert [_column_height_units(rows, i * slot_px + 1, unit_px) for i in range(len(values))] == values
    gap_x = slot_px - 1  # between bars: grid lines and background only
    colours = {rows[y][gap_x * 3 : gap_x * 3 + 3] for y in range(height)}
    assert colours == {bytes(CHART_GRID_RGB), bytes(CHART_BACKGROUND_RGB)}
    grid_rows = sum(1 for y in range(height) if rows[y][gap_x * 3 : gap_x * 3 + 3] == bytes(CHART_GRID_RGB))
    assert grid_rows >= CHART_MAX_VALUE  # a line at every unit: the values can be counted off


@pytest.mark.parametrize("values", [[], [0, 3], [CHART_MAX_VALUE + 1]])
def test_a_chart_refuses_values_off_its_grid(values: list[int]) -> None:
    with pytest.raises(ValueError, match="bar values"):
        bar_chart_png(values, 100, 100)


def _pool(**kw) -> list[dict]:
    return [json.loads(p.body) for p in prepare_requests(WorkloadSpec(model="r4b", **kw), pool_size=8)]


@pytest.mark.parametrize("kind", ["text", "image"])
def test_each_set_gives_distinct_prompts_and_hard_ones_ask_for_more_work(kind: str) -> None:
    easy = _pool(kind=kind, prompt_set="easy")
    hard = _pool(kind=kind, prompt_set="hard")

    def text(body: dict) -> str:
        content = body["messages"][0]["content"]
        return content if isinstance(content, str) else content[-1]["text"]

    for pool in (easy, hard):
        assert len({text(b) for b in pool}) == len(pool)  # no shared prompt for the prefix cache
    assert max(len(text(b).split()) for b in easy) < min(len(text(b).split()) for b in hard)
    assert all("step" in text(b).lower() for b in hard)
    if kind == "image":
        urls = [b["messages"][0]["content"][0]["image_url"]["url"] for b in hard]
        assert all(u.startswith("data:image/png;base64,") for u in urls)
        assert len(set(urls)) > 1  # charts of different values
        png = base64.b64decode(urls[0].split(",", 1)[1])
        assert bytes(CHART_BAR_RGB) in zlib.decompress(png[41 : 41 + struct.unpack(">I", png[33:37])[0]])
    assert _pool(kind=kind, prompt_set="hard", seed=1) != hard and _pool(kind=kind, prompt_set="hard") == hard


def test_an_unknown_set_is_refused() -> None:
    import random

    with pytest.raises(ValueError, match="unknown prompt set 'medium'"):
        set_prompt("medium", "text", 0, random.Random(0), (64, 64))
    with pytest.raises(ValueError, match="unknown prompt set"):
        BenchConfig(base_url="http://x", prompt_sets=["medium"])
    assert set(PROMPT_SETS) == {"easy", "hard"}


def test_prompt_sets_are_an_axis_outside_the_modes() -> None:
    cfg = BenchConfig(base_url="http://x", concurrencies=[1, 4], mode="auto,short", prompt_sets=["easy", "hard"])
    points = [(p, m, lv.concurrency) for p, m, lv in cfg.points()]
    assert points[:4] == [("easy", "auto", 1), ("easy", "auto", 4), ("easy", "short", 1), ("easy", "short", 4)]
    assert len(points) == 8 and points[4][0] == "hard"
    single = BenchConfig(base_url="http://x", concurrencies=[1, 4], mode="auto,short")
    assert cfg.time_bound_s() > single.time_bound_s()
    assert cfg.workload_label() == "text, prompts easy,hard"


def _tokenizer(word_tokens, calls: list[int] | None = None):
    """A /tokenize stand-in: 20 tokens a conversation, 10 a turn, `word_tokens(word, position)` a word."""

    def count(messages: list[dict]) -> int:
        if calls is not None:
            calls.append(1)
        total = 20
        for message in messages:
            words = message["content"].split()
            total += 10 + sum(word_tokens(w, i) for i, w in enumerate(words))
        return total

    return count


def _pool_mean_tokens(count, words: int, pool_size: int = 64) -> float:
    spec = WorkloadSpec(model="r4b", prompt_words=words, text_task=False)
    pool = prepare_requests(spec, pool_size=pool_size)
    return sum(count(json.loads(p.body)["messages"]) for p in pool) / len(pool)


def test_calibration_sizes_prompts_in_the_servers_tokens() -> None:
    """Three tokens a word: 48 words are ~180 tokens, so 128 tokens must be fewer words, found
    with a handful of /tokenize calls."""
    calls: list[int] = []
    count = _tokenizer(lambda word, i: 3, calls)
    words = calibrate_prompt_words(WorkloadSpec(model="r4b", text_task=False), 128, count)
    assert len(calls) <= CALIBRATION_CALLS
    assert words < 48
    assert abs(_pool_mean_tokens(count, words) - 128) <= 3  # one word is three tokens: as close as words allow


def test_calibration_measures_the_pools_words_not_one_prompts() -> None:
    """Words of very different cost (as the tiny model's tokenizer: 1 to 8 tokens): the pool's
    mean prompt is what must meet --input-len."""
    count = _tokenizer(lambda word, i: len(word))
    words = calibrate_prompt_words(WorkloadSpec(model="r4b", text_task=False), 120, count)
    assert abs(_pool_mean_tokens(count, words) - 120) <= 5  # within a word (4.6 tokens on average here)


def test_calibration_corrects_a_tokenizer_that_is_not_linear() -> None:
    """Cheap first words, dear later ones: the straight line through the probes misses, the
    checks walk to the closest size."""
    count = _tokenizer(lambda word, i: 1 if i < 12 else 5)
    words = calibrate_prompt_words(WorkloadSpec(model="r4b", text_task=False), 60, count)
    assert abs(_pool_mean_tokens(count, words) - 60) <= 5


def test_an_input_len_below_the_smallest_prompt_is_a_usage_error() -> None:
    count = _tokenizer(lambda word, i: 2)
    smallest = count([{"content": "Prompt 0. word"}])
    with pytest.raises(UsageError, match=f"below the smallest prompt this workload sends \\({smallest} tokens") as exc:
        calibrate_prompt_words(WorkloadSpec(model="r4b", text_task=False), smallest - 1, count)
    assert exc.value.fix == f"pass --input-len {smallest} or more"


def test_sized_prompts_extend_each_other() -> None:
    """A prompt's words do not depend on the size asked (what lets the probes stand for the pool)."""
    short = _pool_mean_tokens(_tokenizer(lambda word, i: 1), 4, pool_size=2)
    spec = WorkloadSpec(model="r4b", text_task=False)
    a = [
        json.loads(p.body)["messages"][0]["content"]
        for p in prepare_requests(spec.model_copy(update={"prompt_words": 4}), pool_size=3)
    ]
    b = [
        json.loads(p.body)["messages"][0]["content"]
        for p in prepare_requests(spec.model_copy(update={"prompt_words": 9}), pool_size=3)
    ]
    assert all(long.startswith(prefix) for prefix, long in zip(a, b, strict=True))
    assert short == 20 + 10 + 6  # "Prompt N." and four words, a token each


def test_input_len_excludes_other_prompt_sources() -> None:
    with pytest.raises(ValueError, match="input len"):
        BenchConfig(base_url="http://x", input_len=64, workload="image")
    with pytest.raises(ValueError, match="input len"):
        BenchConfig(base_url="http://x", input_len=64, prompt_sets=["easy"])


def test_user_messages_put_the_image_first() -> None:
    assert user_messages("hi", None) == [{"role": "user", "content": "hi"}]
    parts = user_messages("hi", "data:image/png;base64,AA")[0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
