"""The planning options shared by `plan`, `render` and `up`, and their conversion to a PlanRequest.

`plan_request_from` takes only the planning keys, so a command can keep its own options beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from r4b_deploy.errors import UsageError
from r4b_deploy.planning.plan import PlanRequest

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and ±inf: NaN passes every range comparison, and
    an infinite timeout, duration or rate means "forever". Shared by every float option."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        """No bounds, no range in --help (click would print `[x<=None]`)."""
        return "" if self.min is None and self.max is None else super()._describe_range()


class FolderPath(click.Path):
    """A folder option as a Path; an empty value is refused (Path("") is the current folder)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("empty: that would be the current folder; name one, e.g. deploy (or . on purpose)", param, ctx)
        return super().convert(value, param, ctx)


AUTO = "auto"


class ReplicaCount(click.ParamType):
    """`--replicas N|auto`: a positive count, or "auto" (None: the planner decides)."""

    name = "replicas"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        text = str(value).strip().lower()
        if text == AUTO:
            return None
        try:
            count = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a positive whole number nor {AUTO!r}", param, ctx)
        if count < 1:
            self.fail(f"{value!r}: at least 1 replica (or {AUTO!r})", param, ctx)
        return count


# click parameter name -> PlanRequest field
PLANNING_KEYS: dict[str, str] = {
    "gpu": "gpu",
    "inventory": "inventory_file",
    "profile": "profile",
    "max_model_len": "max_model_len",
    "max_num_seqs": "max_num_seqs",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "kv_cache_dtype": "kv_cache_dtype",
    "images_per_prompt": "images_per_prompt",
    "rehearsal": "rehearsal",
    "vllm_version": "vllm_version",
    "revision": "revision",
    "model": "model",
    "max_num_batched_tokens": "max_num_batched_tokens",
    "tensor_parallel_size": "tensor_parallel_size",
    "replicas": "replicas",
}
# PlanRequest field -> the option a user typed, for error messages
_FLAG_OF_FIELD = {field: "--" + key.replace("_", "-") for key, field in PLANNING_KEYS.items()}

_OPTIONS = (
    click.option(
        "--model",
        metavar="NAME|DIR",
        help="The model to plan and serve (default: R-4B): a name from profiles/models (qwen3-vl-4b-thinking), "
        "or a folder holding its config.json and safetensors weights (served from that path).",
    ),
    click.option(
        "--gpu",
        metavar="NAME[:COUNT]",
        help="Plan for GPUs named from the catalog instead of measuring this machine (L4, A100-80GB:8; "
        "one it lacks as memory@capability: 16GiB@8.9).",
    ),
    click.option(
        "--inventory",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Plan for the GPUs in a file written by `r4b-deploy gpus --json` on another machine.",
    ),
    click.option(
        "--profile", metavar="NAME", help="Force a tier: light, medium, heavy, tp8 (default: the highest that fits)."
    ),
    click.option(
        "--max-model-len", type=int, metavar="INT", help="Context length (prompt + output tokens) per request."
    ),
    click.option("--max-num-seqs", type=int, metavar="INT", help="Most sequences vLLM runs at once."),
    click.option(
        "--max-num-batched-tokens",
        type=int,
        metavar="INT",
        help="Most tokens vLLM schedules per step (default: the tier's, else vLLM's for the GPU).",
    ),
    click.option(
        "--tensor-parallel-size",
        type=int,
        metavar="INT",
        help="Split the model over this many GPUs, whatever the tier (default: the tier's).",
    ),
    click.option(
        "--replicas",
        type=ReplicaCount(),
        default=None,
        help="vLLM engines on this host behind vLLM's router, each on its own GPUs (rehearsing: its own CPU core); "
        "auto: one per GPU when that serves more than one engine, else 1; with --target kubernetes the "
        "cluster's replica count  [default: auto].",
    ),
    click.option(
        "--gpu-memory-utilization",
        type=FiniteFloatRange(),
        metavar="FLOAT",
        help="Share of each GPU's TOTAL memory vLLM may use (0-1).",
    ),
    click.option(
        "--kv-cache-dtype",
        type=click.Choice(["auto", "fp8"]),
        help="KV cache precision: auto (the model's dtype) or fp8 (half the memory per token).",
    ),
    click.option("--images-per-prompt", type=int, metavar="INT", help="Most images one request may carry."),
    click.option(
        "--vllm-version",
        metavar="VERSION",
        help="vLLM release for GPU images, one of profiles/vllm.yaml gpu.releases "
        "(default: the newest the driver runs).",
    ),
    click.option(
        "--revision",
        metavar="REV",
        help="Pin the model's Hugging Face revision (branch, tag or commit; default: its main branch).",
    ),
    click.option(
        "--rehearsal",
        is_flag=True,
        default=False,
        help="Plan the CPU rehearsal: the tiny R-4B-architecture model on vLLM's CPU build, no GPU.",
    ),
)


def planning_options(func: F) -> F:
    """Add the planning options to a click command (plan, render, up)."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def plan_request_from(_kwargs: dict[str, Any] | None = None, /, **kwargs: Any) -> PlanRequest:
    """Build the PlanRequest from a command's keyword arguments.

    `plan_request_from(**kwargs)` ignores keys that are not planning options;
    `plan_request_from(kwargs)` also pops the planning keys out of that dict, leaving the
    command's own options in it.
    """
    from pydantic import ValidationError

    from r4b_deploy.datafile import validation_problem

    values: dict[str, Any] = {}
    for source in (kwargs, _kwargs):
        if source is None:
            continue
        for key, field in PLANNING_KEYS.items():
            if key in source:
                value = source.pop(key)
                if value is not None:
                    values[field] = value
    try:
        return PlanRequest(**values)
    except ValidationError as exc:
        problem = validation_problem(exc)
        field = problem.top_field
        flag = _FLAG_OF_FIELD.get(field, field)
        value = values.get(field)
        message = problem.message.lower()
        raise UsageError(
            f"{flag} {value}: {message}" if value is not None else f"{flag}: {message}",
            fix=f"see `r4b-deploy plan --help` for {flag}",
        ) from exc


DEFAULT_DEPLOYMENT_DIR = Path("deploy")


def deployment_dir_option(func: F) -> F:
    """`--dir/--out DIR`: the deployment folder `up` wrote (down, status, logs find it there)."""
    return click.option(
        "--dir",
        "--out",
        "deployment_dir",
        type=FolderPath(file_okay=False),
        default=DEFAULT_DEPLOYMENT_DIR,
        show_default=True,
        help="The deployment folder `up` wrote.",
    )(func)


def runtime_option(*, default: str | None, help: str) -> Callable[[F], F]:
    """`--runtime docker|process`: the one definition (names from `launch.base.RUNTIME_NAMES`) that
    up, doctor, down, status and logs share."""
    from r4b_deploy.launch.base import RUNTIME_NAMES

    return click.option(
        "--runtime",
        type=click.Choice(RUNTIME_NAMES),
        default=default,
        show_default=default is not None,
        help=help,
    )


def runtime_override_option(func: F) -> F:
    """`--runtime docker|process`: override the runtime `up` recorded in the folder."""
    return runtime_option(default=None, help="Override the runtime `up` recorded in the folder.")(func)


def bench_gate_options(func: F) -> F:
    """`--slo NAME=VALUE` and `--max-error-rate F`: the gates `bench` and `up` judge a benchmark by
    (`bench/slo.py`). kwargs: slos, max_error_rate."""
    func = click.option(
        "--max-error-rate",
        type=FiniteFloatRange(min=0, max=1),
        default=0.0,
        show_default=True,
        help="Failed requests allowed per level, as a fraction, before the run fails.",
    )(func)
    return click.option(
        "--slo",
        "slos",
        multiple=True,
        metavar="[MODE:]NAME=VALUE",
        help="Gate, e.g. p95_ttft_ms=500, short:p95_time_to_first_answer_ms=900, max_cut_off_thinking_rate=0.1"
        " (repeatable).",
    )(func)
