"""Built-in prompt sets with a difficulty axis: `easy` (a short factual question, a plain picture)
and `hard` (a multi-step problem, a chart whose values must be read and combined).

R-4B decides by itself whether to think; these sets are there so `bench --prompts easy,hard`
shows auto mode's think rate and cost rising with difficulty on the real model. With the tiny
random-weight rehearsal model they only prove the plumbing (its replies are noise). Every prompt
carries its own numbers, so the pool has no shared prefix for the server's cache to skip, and
every image is drawn by the package (client/images.py): nothing is downloaded.
"""

from __future__ import annotations

import random
from typing import Literal

PromptSetName = Literal["easy", "hard"]
PROMPT_SETS: tuple[str, ...] = ("easy", "hard")
PLUMBING_NOTE = (
    "prompt sets {sets}: their think rate and cost only mean something on the real model;"
    " with a tiny random-weight model they prove the plumbing"
)
CHART_BARS = 3  # values to read off a hard chart: few enough to state, enough to combine

_COUNTRIES = ("France", "Japan", "Canada", "Kenya", "Peru", "Norway", "Egypt", "India")


def _easy_text(index: int, rng: random.Random) -> str:
    country = _COUNTRIES[index % len(_COUNTRIES)]
    return f"Question {index}: what is the capital of {country}? Answer in one word."


def _hard_text(index: int, rng: random.Random) -> str:
    boxes, per_box, broken, price = rng.randint(3, 9), rng.randint(6, 24), rng.randint(2, 9), rng.randint(2, 7)
    return (
        f"Problem {index}: a shop receives {boxes} boxes of {per_box} cups each; {broken} cups arrive broken."
        f" It sells two thirds of the rest, rounded down, at {price} dollars a cup, and then receives one more"
        " box. How many cups are in stock now, and how much money did the sales bring? Work it out step by step."
    )


def _easy_image(index: int, rng: random.Random, size_px: tuple[int, int]) -> tuple[str, str]:
    from r4b_deploy.client.images import COLOUR_BARS, png_data_url, solid_png

    colour = index % len(COLOUR_BARS)
    return f"Picture {index}: what colour is this picture? One word.", png_data_url(
        solid_png(*size_px, COLOUR_BARS[colour])
    )


def _hard_image(index: int, rng: random.Random, size_px: tuple[int, int]) -> tuple[str, str]:
    from r4b_deploy.client.images import CHART_MAX_VALUE, bar_chart_png, png_data_url

    values = [rng.randint(1, CHART_MAX_VALUE) for _ in range(CHART_BARS)]
    text = (
        f"Chart {index}: the grey lines mark every unit from 0 to {CHART_MAX_VALUE}. Read the value of each of"
        f" the {CHART_BARS} bars from left to right, then compute (first + last) × middle − the smallest value."
        " Explain each step."
    )
    return text, png_data_url(bar_chart_png(values, *size_px))


def set_prompt(
    name: str, kind: str, index: int, rng: random.Random, image_size_px: tuple[int, int]
) -> tuple[str, str | None]:
    """Prompt `index` of set `name` for a text or image workload: (text, image data URL or None)."""
    if name not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {name!r} (known: {', '.join(PROMPT_SETS)})")
    if kind == "image":
        return (_easy_image if name == "easy" else _hard_image)(index, rng, image_size_px)
    return (_easy_text if name == "easy" else _hard_text)(index, rng), None


def plumbing_note(sets: list[str]) -> str:
    return PLUMBING_NOTE.format(sets=",".join(sets))
