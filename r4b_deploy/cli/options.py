"""The planning options shared by `plan`, `render` and `up`, and their conversion to a PlanRequest.

`plan_request_from` takes only the planning keys, so a command can keep its own options beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from r4b_deploy.errors import UsageError
from r4b_deploy.planning.plan import PlanRequest

F = TypeVar("F", bound=Callable[..., Any])

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
}
# PlanRequest field -> the option a user typed, for error messages
_FLAG_OF_FIELD = {field: "--" + key.replace("_", "-") for key, field in PLANNING_KEYS.items()}

_OPTIONS = (
    click.option(
        "--gpu",
        metavar="NAME[:COUNT]",
        help="Plan for GPUs named from the catalog instead of measuring this machine (L4, A100-80GB:8).",
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
        "--gpu-memory-utilization",
        type=float,
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
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        flag = _FLAG_OF_FIELD.get(field, field)
        value = values.get(field)
        raise UsageError(
            f"{flag} {value}: {first['msg'].lower()}" if value is not None else f"{flag}: {first['msg'].lower()}",
            fix=f"see `r4b-deploy plan --help` for {flag}",
        ) from exc


DEFAULT_DEPLOYMENT_DIR = Path("deploy")


def deployment_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--dir/--out DIR`: the deployment folder `up` wrote (down, status, logs find it there)."""
    return click.option(
        "--dir",
        "--out",
        "deployment_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DEPLOYMENT_DIR,
        show_default=True,
        help="The deployment folder `up` wrote.",
    )(func)


def runtime_override_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--runtime docker|process`: override the runtime `up` recorded in the folder."""
    return click.option(
        "--runtime",
        type=click.Choice(["docker", "process"]),
        default=None,
        help="Override the runtime `up` recorded in the folder.",
    )(func)
