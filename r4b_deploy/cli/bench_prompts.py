"""bench's options on what the prompts are: their size in tokens (`--input-len`, `--output-len`,
as `vllm bench serve` users know them), a built-in prompt set (`--prompts easy,hard`) or the
user's own requests (`--dataset FILE.jsonl`).

They reach `command` as one `prompt_source` dict, so bench's own signature stays short; the
checks that need several options at once (which exclude which) are made here, before any load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

_NAMES = ("input_len", "output_len", "prompt_sets", "dataset")


def _split_sets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """`--prompts easy,hard` -> ["easy", "hard"]; a set the package lacks is refused."""
    from r4b_deploy.bench.prompts import PROMPT_SETS

    sets = [part.strip() for value in values for part in value.split(",") if part.strip()]
    for name in sets:
        if name not in PROMPT_SETS:
            raise click.BadParameter(f"{name!r} is not one of {', '.join(PROMPT_SETS)}", ctx=ctx, param=param)
    return list(dict.fromkeys(sets))


_OPTIONS = (
    click.option(
        "--input-len",
        type=click.IntRange(min=1),
        help="Prompt tokens per text request, as the server counts them (chat template included): sized with a"
        " few /tokenize calls before the load. Replaces --prompt-words.",
    ),
    click.option(
        "--output-len",
        type=click.IntRange(min=1),
        help="Tokens to generate per request (max_tokens; with --ignore-eos exactly this many).",
    ),
    click.option(
        "--prompts",
        "prompt_sets",
        multiple=True,
        callback=_split_sets,
        metavar="SET[,SET...]",
        help="Built-in prompt sets swept as an axis: easy (a short factual question; with --workload image a"
        " plain picture), hard (a multi-step problem; a chart to read and compute from).",
    ),
    click.option(
        "--dataset",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE.jsonl",
        help="Replay your own requests: one chat messages list (or {messages, max_tokens}) per line; images as"
        " data URLs or local paths.",
    ),
)


def prompt_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options above, handed to `f` as `prompt_source={name: value}`."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        source = {name: kwargs.pop(name) for name in _NAMES}
        return f(*args, prompt_source=source, **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def prompt_config(source: dict[str, Any], workload: str) -> dict[str, Any]:
    """BenchConfig fields from the options; UsageError (exit 4) for options that exclude each other
    and for a dataset with a bad line (read and checked here, before any load is sent)."""
    from click.core import ParameterSource

    from r4b_deploy.errors import UsageError

    ctx = click.get_current_context()

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE

    out: dict[str, Any] = {}
    if source["output_len"] is not None:
        if given("max_tokens") and ctx.params.get("max_tokens") != source["output_len"]:
            raise UsageError("--output-len and --max-tokens name different sizes", fix="give one of them")
        out["max_tokens"] = source["output_len"]
    if source["dataset"] is not None and source["prompt_sets"]:
        raise UsageError("--dataset and --prompts exclude each other", fix="give one of them")
    if source["input_len"] is not None:
        if given("prompt_words"):
            raise UsageError("--input-len and --prompt-words exclude each other", fix="give --input-len alone")
        if workload != "text" or source["dataset"] is not None or source["prompt_sets"]:
            raise UsageError(
                "--input-len sizes the synthetic text prompts: not images, --prompts or --dataset",
                fix="drop --input-len, or use --workload text without --prompts and --dataset",
            )
        out["input_len"] = source["input_len"]
    if source["dataset"] is not None:
        from r4b_deploy.bench.dataset import load_dataset_once

        load_dataset_once(source["dataset"])  # every line checked now: exit 4 naming the line
        out["dataset"] = source["dataset"]
    if source["prompt_sets"]:
        out["prompt_sets"] = source["prompt_sets"]
    return out
