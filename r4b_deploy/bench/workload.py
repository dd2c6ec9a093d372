"""What the benchmark sends: chat request bodies, built and serialised before the load starts.

Serialising ahead keeps JSON encoding (and, for images, megabytes of base64) off the hot
path, so the load generator spends its CPU on reading streams. A pool of distinct prompts is
cycled: distinct, so the server's prefix cache does not turn the run into a cache benchmark;
a pool, so a long run does not build millions of bodies.
"""

from __future__ import annotations

import json
import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from r4b_deploy.spec import model_spec

WorkloadKind = Literal["text", "image"]
ModeChoice = Literal["auto", "long", "short", "mix"]

PROMPT_POOL_SIZE = 64
DEFAULT_PROMPT_WORDS = 48  # about 64 prompt tokens with the chat template: vLLM's "random 64 in" ballpark
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
    image_size_px: tuple[int, int] = DEFAULT_IMAGE_SIZE_PX
    seed: int = 0


def modes_for(choice: ModeChoice) -> list[str]:
    """The thinking modes one workload cycles through (`mix`: all the model's modes, in turn)."""
    return list(model_spec().thinking.modes) if choice == "mix" else [choice]


def _prompt_text(rng: random.Random, words: int, index: int) -> str:
    # A distinct leading number per prompt breaks shared prefixes across the pool.
    picked = " ".join(rng.choice(_WORDS) for _ in range(words))
    return f"Prompt {index}. {picked}\n{_TEXT_TASK}"


def _image_url(width: int, height: int, index: int) -> str:
    from r4b_deploy.client.images import COLOUR_BARS, png_data_url, png_from_row

    # Colour bars rotated per prompt: distinct images, so the server's multimodal cache cannot
    # skip the vision encoder on every request after the first.
    bars = COLOUR_BARS[index % len(COLOUR_BARS) :] + COLOUR_BARS[: index % len(COLOUR_BARS)]
    row = b"".join(bytes(bars[x * len(bars) // width]) for x in range(width))
    return png_data_url(png_from_row(width, height, row))


def build_body(spec: WorkloadSpec, mode: str | None, prompt: str, image_url: str | None) -> dict:
    """The OpenAI chat body, streamed, with usage in the last chunk and the mode's template kwargs."""
    content: str | list[dict] = prompt
    if image_url is not None:
        content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": prompt}]
    body: dict = {
        "model": spec.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": spec.max_tokens,
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
    rng = random.Random(spec.seed)
    # A multiple of the number of modes, so cycling the pool keeps the modes alternating.
    size = max(pool_size - pool_size % len(modes), len(modes))
    prepared: list[PreparedRequest] = []
    for i in range(size):
        mode = modes[i % len(modes)]
        if spec.kind == "image":
            prompt, url = _IMAGE_TASK, _image_url(*spec.image_size_px, i)
        else:
            prompt, url = _prompt_text(rng, spec.prompt_words, i), None
        body = build_body(spec, mode, prompt, url)
        prepared.append(
            PreparedRequest(workload=spec.kind, mode=mode, body=json.dumps(body, separators=(",", ":")).encode())
        )
    return prepared
