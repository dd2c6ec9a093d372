"""Editing a `vllm serve` argument list: the plan's arguments plus the user's overrides."""

from __future__ import annotations

import json


def compact_json_arg(arg: str) -> str:
    """JSON-valued flags (--limit-mm-per-prompt) without spaces, so `$(cat vllm-args.txt)` keeps them whole."""
    if arg[:1] in "{[":
        try:
            return json.dumps(json.loads(arg), separators=(",", ":"))
        except ValueError:
            return arg
    return arg


def flag_names(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def drop_flag(args: list[str], flag: str) -> list[str]:
    """`args` without `flag VALUE` and `flag=VALUE`."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def with_model(args: list[str], model: str) -> list[str]:
    """Put `model` where the plan's args name the model: first positional, or --model."""
    if args and not args[0].startswith("-"):
        return [model, *args[1:]]
    if "--model" in args or any(a.startswith("--model=") for a in args):
        return [model, *drop_flag(args, "--model")]
    return [model, *args]


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    """Set `flag` to `value`: in place when present, else after the model."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return [*args[: i + 1], value, *args[i + 2 :]]
        if arg.startswith(flag + "="):
            return [*args[:i], f"{flag}={value}", *args[i + 1 :]]
    return [args[0], flag, value, *args[1:]] if args else [flag, value]
