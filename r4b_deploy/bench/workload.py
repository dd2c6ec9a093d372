"""What the benchmark sends: chat request bodies, built and serialised before the load starts.

Serialising ahead keeps JSON encoding (and, for images, megabytes of base64) off the hot
path, so the load generator spends its CPU on reading streams. A pool of distinct prompts is
cycled: distinct, so the server's prefix cache does not turn the run into a cache benchmark;
a pool, so a long run does not build millions of bodies.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from r4b_deploy.bench.dataset import DatasetRequest
from r4b_deploy.errors import UsageError
from r4b_deploy.spec import model_spec

WorkloadKind = Literal["text", "image"]
ModeChoice = Literal["auto", "long", "short", "mix"]

PROMPT_POOL_SIZE = 64
DEFAULT_PROMPT_WORDS = 48  # words, not tokens: --input-len N sizes prompts in the server's tokens
# --input-len: prompt sizes probed with /tokenize to learn tokens per word, then corrections of
# the chosen size (calibrate_prompt_words: a few calls before the load, none during it).
CALIBRATION_PROBE_WORDS = (1, 32)
# Each probe after the first sends this many of the pool's prompts as user turns of one
# conversation: the count is their mean, not one prompt's (the tiny model's tokenizer spends
# 1 to 8 tokens on a word: one prompt's words misjudged the pool by 10 %).
CALIBRATION_TURNS = 16
CALIBRATION_CHECKS = 2  # corrections after the probes: tokens per word is not linear either
CALIBRATION_CALLS = 3 + CALIBRATION_CHECKS  # one prompt alone, the two probes, the checks: at most, per mode
DEFAULT_IMAGE_SIZE_PX = (384, 384)  # one SigLIP tile: the cheapest image R-4B sees in full
# Words for synthetic prompts: common, single-token in most BPE vocabularies.
_WORDS_TEXT = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law car "
    "city community name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason research girl guy"
)
_WORDS = tuple(_WORDS_TEXT.split())
_TEXT_TASK = "Read the words above, then write a short story that uses as many of them as you can."
_IMAGE_TASK = "Describe this image in detail: the colours, their order, and what it could show."


class PreparedRequest(BaseModel):
    """One ready-to-send request: the body as bytes plus the labels its record carries."""

    model_config = ConfigDict(frozen=True)

    workload: WorkloadKind
    mode: str | None
    body: bytes


class WorkloadSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    kind: WorkloadKind = "text"
    mode: ModeChoice = "auto"
    max_tokens: int = Field(default=256, gt=0)
    ignore_eos: bool = False
    temperature: float | None = Field(default=None, ge=0)
    prompt_words: int = Field(default=DEFAULT_PROMPT_WORDS, gt=0)
    # False for --input-len: bare words after "Prompt N.", as vLLM's random prompts, so that small
    # sizes stay reachable (the task sentence alone was ~50 tokens on the tiny model's tokenizer).
    text_task: bool = True
    image_size_px: tuple[int, int] = DEFAULT_IMAGE_SIZE_PX
    seed: int = 0
    prompt_set: str | None = None  # "easy" or "hard" (bench/prompts.py); None: synthetic words
    # --dataset: the user's requests, replayed in order (bench/dataset.py), instead of generated ones.
    dataset: SkipValidation[list[DatasetRequest] | None] = None


def modes_for(choice: ModeChoice) -> list[str]:
    """The thinking modes one workload cycles through (`mix`: all the model's modes, in turn)."""
    return list(model_spec().thinking.modes) if choice == "mix" else [choice]


def _prompt_text(seed: int, words: int, index: int, task: bool = True) -> str:
    """Synthetic prompt `index`: its own word sequence (seeded by seed and index), so a longer
    prompt extends a shorter one and sizing (calibrate_prompt_words) measures the pool's words."""
    rng = random.Random(f"{seed}:{index}")
    # A distinct leading number per prompt breaks shared prefixes across the pool.
    picked = " ".join(rng.choice(_WORDS) for _ in range(words))
    return f"Prompt {index}. {picked}\n{_TEXT_TASK}" if task else f"Prompt {index}. {picked}"


def _image_url(width: int, height: int, index: int) -> str:
    from r4b_deploy.client.images import COLOUR_BARS, png_data_url, png_from_row

    # Colour bars rotated per prompt: distinct images, so the server's multimodal cache cannot
    # skip the vision encoder on every request after the first.
    bars = COLOUR_BARS[index % len(COLOUR_BARS) :] + COLOUR_BARS[: index % len(COLOUR_BARS)]
    row = b"".join(bytes(bars[x * len(bars) // width]) for x in range(width))
    return png_data_url(png_from_row(width, height, row))


def user_messages(prompt: str, image_url: str | None) -> list[dict]:
    """One user turn: the text, after the image when there is one."""
    content: str | list[dict] = prompt
    if image_url is not None:
        content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def build_body(
    spec: WorkloadSpec,
    mode: str | None,
    prompt: str,
    image_url: str | None,
    messages: list[dict] | None = None,
    max_tokens: int | None = None,
) -> dict:
    """The OpenAI chat body, streamed, with usage in the last chunk and the mode's template kwargs
    (`messages`, `max_tokens`: a replayed dataset request's own)."""
    body: dict = {
        "model": spec.model,
        "messages": messages if messages is not None else user_messages(prompt, image_url),
        "max_tokens": max_tokens or spec.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    if spec.ignore_eos:
        body["ignore_eos"] = True
    thinking = model_spec().thinking
    kwargs = thinking.template_kwargs(mode)
    if kwargs:
        body[thinking.request_field] = kwargs
    return body


def prepare_requests(spec: WorkloadSpec, pool_size: int = PROMPT_POOL_SIZE) -> list[PreparedRequest]:
    """The request pool, in sending order: request i uses entry i % len(pool).

    With `mix`, modes alternate request by request (auto, long, short, auto, ...), so every
    stretch of a run, and every concurrency level, sees the same blend.
    """
    modes = modes_for(spec.mode)
    if spec.dataset is not None:
        return _replay(spec, modes)
    rng = random.Random(spec.seed)
    # A multiple of the number of modes, so cycling the pool keeps the modes alternating.
    size = max(pool_size - pool_size % len(modes), len(modes))
    prepared: list[PreparedRequest] = []
    for i in range(size):
        mode = modes[i % len(modes)]
        if spec.prompt_set is not None:
            from r4b_deploy.bench.prompts import set_prompt

            prompt, url = set_prompt(spec.prompt_set, spec.kind, i, rng, spec.image_size_px)
        elif spec.kind == "image":
            prompt, url = _IMAGE_TASK, _image_url(*spec.image_size_px, i)
        else:
            prompt, url = _prompt_text(spec.seed, spec.prompt_words, i, spec.text_task), None
        body = build_body(spec, mode, prompt, url)
        prepared.append(
            PreparedRequest(workload=spec.kind, mode=mode, body=json.dumps(body, separators=(",", ":")).encode())
        )
    return prepared


def _replay(spec: WorkloadSpec, modes: list[str]) -> list[PreparedRequest]:
    """The dataset's requests in file order, once per mode in turn when the file's length would
    break the alternation of `mix` (so cycling the pool keeps the modes alternating)."""
    assert spec.dataset is not None
    rounds = 1 if len(spec.dataset) % len(modes) == 0 else len(modes)
    prepared = []
    for i in range(len(spec.dataset) * rounds):
        req = spec.dataset[i % len(spec.dataset)]
        mode = modes[i % len(modes)]
        body = build_body(spec, mode, "", None, messages=req.messages, max_tokens=req.max_tokens)
        kind: WorkloadKind = "image" if req.images else "text"
        prepared.append(
            PreparedRequest(workload=kind, mode=mode, body=json.dumps(body, separators=(",", ":")).encode())
        )
    return prepared


def calibrate_prompt_words(spec: WorkloadSpec, input_len: int, count: Callable[[list[dict]], int]) -> int:
    """Words per synthetic text prompt so that the server counts about `input_len` prompt tokens
    on average, chat template included. `count(messages)` is the server's /tokenize. The smallest
    prompt (one word) gives the fixed cost; the pool's first CALIBRATION_TURNS prompts at the two
    probe sizes, sent as the turns of one conversation, give tokens per word and, by difference
    from the one-word turns, the pool's mean prompt size at any size (the template's per-turn
    cost cancels); up to CALIBRATION_CHECKS such calls correct the size, the closest one wins.
    Measured on the tiny model (1 to 8 tokens a word): --input-len 64 gave a mean of 61 (auto)
    and 62.5 (short) prompt tokens; one prompt's words alone had given 71 and 73."""
    low_words, high_words = CALIBRATION_PROBE_WORDS
    n = CALIBRATION_TURNS

    def turns(words: int, count_of: int) -> list[dict]:
        return [{"role": "user", "content": _prompt_text(spec.seed, words, i, spec.text_task)} for i in range(count_of)]

    smallest = count(turns(low_words, 1))
    if input_len < smallest:
        raise UsageError(
            f"--input-len {input_len} is below the smallest prompt this workload sends ({smallest} tokens:"
            " the chat template and one word)",
            fix=f"pass --input-len {smallest} or more",
        )
    base = count(turns(low_words, n))

    def mean_tokens(words: int) -> float:
        return smallest + (count(turns(words, n)) - base) / n

    per_word = max(mean_tokens(high_words) - smallest, 1) / (high_words - low_words)
    words = low_words + round((input_len - smallest) / per_word)
    best_off, best_words = float(smallest - input_len), low_words
    for _ in range(CALIBRATION_CHECKS):
        off = mean_tokens(words) - input_len
        if abs(off) < abs(best_off):
            best_off, best_words = off, words
        step = round(off / per_word)
        if step == 0:
            break
        words = max(low_words, words - step)
    return best_words
