"""The one place a plan's vLLM settings become the arguments after `vllm serve`.

The plan carries structured settings only. The renderer (the container's command and
vllm-args.txt), the process runtime (listening on the host's address and port) and `plan --json`
each call `vllm_serve_args` with their own model, served name, host and port; nothing edits an
argument list afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from r4b_deploy.errors import UsageError

if TYPE_CHECKING:
    from r4b_deploy.planning.plan import VllmSettings

# Inside its container vLLM listens on every interface at this port; who can reach it is decided
# by the port publication (127.0.0.1 unless --public). `plan --json` shows the container's arguments.
CONTAINER_HOST = "0.0.0.0"
CONTAINER_PORT = 8000
# No video: a zero limit keeps vLLM from profiling (and reserving memory for) video (R-4B has none; the
# planner models images only).
NO_VIDEO_LIMIT = {"video": 0}


def vllm_serve_args(
    settings: VllmSettings,
    *,
    model: str,
    served_model_name: str,
    host: str,
    port: int,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The model first, then the settings, --host/--port, and last the user's `extra_args`.

    An extra argument may add a flag, never set one the settings set: a second value would
    silently win or lose depending on vLLM's parser (UsageError saying where to change it).
    """
    args = [model, "--served-model-name", served_model_name]
    if settings.revision:  # the model's (and, by vLLM's default, its tokenizer's) Hugging Face revision
        args += ["--revision", settings.revision]
    if settings.trust_remote_code:
        args.append("--trust-remote-code")
    args += [
        "--dtype",
        settings.dtype,
        "--max-model-len",
        str(settings.max_model_len),
        "--max-num-seqs",
        str(settings.max_num_seqs),
        "--max-num-batched-tokens",
        str(settings.max_num_batched_tokens),
    ]
    if settings.gpu_memory_utilization:  # 0: the CPU rehearsal, whose KV cache is sized by VLLM_CPU_KVCACHE_SPACE
        args += ["--gpu-memory-utilization", f"{settings.gpu_memory_utilization:g}"]
    if settings.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    if settings.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", settings.kv_cache_dtype]
    if settings.multimodal:  # vLLM refuses the limit for a text-only model
        # Compact JSON: `vllm serve $(cat vllm-args.txt)` splits on whitespace.
        limit = {"image": settings.images_per_prompt, **NO_VIDEO_LIMIT}
        args += ["--limit-mm-per-prompt", json.dumps(limit, separators=(",", ":"))]
    if settings.enforce_eager:
        args.append("--enforce-eager")
    if settings.reasoning_parser:
        args += ["--reasoning-parser", settings.reasoning_parser]
    check_extra_args(extra_args, planned_args=args)
    return [*args, "--host", host, "--port", str(port), *extra_args]


# Flags r4b-deploy sets on every deployment, with where to change each instead. --host/--port make
# the server reachable where the health check looks, the API key stays in the env file (a flag
# would put it in a rendered file), the model has options of its own, and a --config file could
# set any of these unseen.
MANAGED_VLLM_FLAGS: dict[str, str] = {
    "--host": "the container always listens on 0.0.0.0 inside; use --public to publish beyond 127.0.0.1",
    "--port": "use --port (the host port); vLLM listens on 8000 inside the container",
    "--api-key": "the API key lives in r4b.env (VLLM_API_KEY), never in a rendered file",
    "--model": "use --model",
    "--served-model-name": "use --served-model-name",
    "--revision": "use --revision (it pins the model's Hugging Face revision in the plan and the manifest)",
    "--config": "a vLLM config file could set the flags r4b-deploy manages; pass each flag with --extra-vllm-arg",
}
# argparse reads "-1" or "-.5" as a value, anything else after a single dash as a short option.
_NEGATIVE_NUMBER = re.compile(r"-[0-9]+|-[0-9]*\.[0-9]+")
_EXTRA = "--extra-vllm-arg"


def vllm_flag_name(arg: str) -> str:
    """The flag `arg` names as vLLM's parser reads it: before `=`, before a `.key` part, `_` as `-`."""
    name = arg.split("=", 1)[0].split(".", 1)[0]
    return "--" + name[2:].replace("_", "-")


def check_extra_args(extra_args: Sequence[str], planned_args: Sequence[str] = ()) -> None:
    """Refuse an extra argument vLLM would read as a flag r4b-deploy or the plan (`planned_args`) sets.

    vLLM's argparse takes any unambiguous prefix of a flag (allow_abbrev cannot be switched off
    from the command line), so `--por=1` is `--port=1`: a flag is refused when it is a prefix of
    a managed one (an ambiguous prefix too: vLLM would refuse it anyway), or of the `--no-` form
    of a planned boolean flag. Short options (-tp, -q, -O) alias long flags: use the long name.
    """
    for arg in extra_args:
        problem = extra_arg_problem(arg, planned_args)
        if problem is not None:
            message, fix = problem
            raise UsageError(f"{_EXTRA}: {message}", fix=fix)


def extra_arg_problem(arg: str, planned_args: Sequence[str] = ()) -> tuple[str, str] | None:
    """(what is wrong, what to do) when vLLM would read `arg` as a managed or planned flag; None if not.

    The message names flags only, never a value (`--api-ke=SECRET` must not reach a log).
    """
    if arg.startswith("-") and not arg.startswith("--"):
        if _NEGATIVE_NUMBER.fullmatch(arg):
            return None
        short = arg.split("=", 1)[0]
        return (
            f"{short} is a short option to vLLM's parser (-tp, -q and -O alias long flags)",
            "use the flag's long name, e.g. --extra-vllm-arg=--max-log-len=100",
        )
    if not arg.startswith("--"):
        return None
    name = vllm_flag_name(arg)
    if name == "--":
        return ("`--` ends vLLM's options", "drop it; give each flag with its own --extra-vllm-arg")
    owners = {flag: "managed" for flag in MANAGED_VLLM_FLAGS} | _planned_flags(planned_args)
    matches = sorted(flag for flag in owners if flag.startswith(name))
    if not matches:
        return None
    if len(matches) > 1:
        return (
            f"{name} could abbreviate {', '.join(matches)}, which r4b-deploy or the plan sets "
            "(vLLM reads a flag's unambiguous prefix as the flag)",
            "spell the flag in full (vllm serve --help lists them)",
        )
    flag = matches[0]
    said = f"{name} is" if name == flag else f"{name} abbreviates {flag}, which is"
    if owners[flag] == "plan":
        return (
            f"{said} already set by the plan",
            f"change {flag} through the planning options (r4b-deploy plan --help), not {_EXTRA}",
        )
    return (f"{said} set by r4b-deploy", MANAGED_VLLM_FLAGS[flag])


def _planned_flags(planned_args: Sequence[str]) -> dict[str, str]:
    """Each flag of the plan's arguments, and for a boolean one (no value follows) its `--no-` form:
    vLLM's BooleanOptionalAction reads `--no-enforce-eager` as the opposite of `--enforce-eager`."""
    flags: dict[str, str] = {}
    for n, arg in enumerate(planned_args):
        if not arg.startswith("--"):
            continue
        flags[vllm_flag_name(arg)] = "plan"
        following = planned_args[n + 1] if n + 1 < len(planned_args) else "--"
        if following.startswith("--"):
            flags["--no-" + arg[2:]] = "plan"
    return flags
