"""Inventories built by hand for the planner's tests (no NVML, no catalog lookups)."""

from __future__ import annotations

from r4b_deploy.hardware.inventory import GPU, Inventory
from r4b_deploy.launch.args import CONTAINER_HOST, CONTAINER_PORT, vllm_serve_args
from r4b_deploy.planning.plan import Plan

GIB = 1024**3
GB = 1000**3
MIB = 1024**2


def gpu(index: int = 0, name: str = "L4", memory_mib: int = 23034, cc: str = "8.9", **extra: object) -> GPU:
    return GPU(index=index, name=name, memory_total_bytes=memory_mib * MIB, compute_capability=cc, **extra)


def inventory(*gpus: GPU, source: str = "file") -> Inventory:
    return Inventory(source=source, gpus=list(gpus))


def same(count: int, name: str = "L4", memory_mib: int = 23034, cc: str = "8.9", source: str = "file") -> Inventory:
    return inventory(*(gpu(i, name, memory_mib, cc) for i in range(count)), source=source)


def flag_value(args: list[str], flag: str) -> str | None:
    """The value after `flag` in a vLLM argument list (None if the flag is absent)."""
    return args[args.index(flag) + 1] if flag in args else None


def plan_args(plan: Plan) -> list[str]:
    """The plan's `vllm serve` arguments as the container runs them (what `plan --json` shows)."""
    v = plan.vllm
    return vllm_serve_args(
        v, model=v.model, served_model_name=v.served_model_name, host=CONTAINER_HOST, port=CONTAINER_PORT
    )
