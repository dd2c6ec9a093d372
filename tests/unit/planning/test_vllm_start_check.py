"""vLLM's own start-up rules, which the planner must not promise past (issue 9): the budget is a share
of the total CUDA reports and must be free after the CUDA context; an unlisted card described by
its memory and compute capability is planned by the same arithmetic."""

from __future__ import annotations

import re

import pytest
from planning_helpers import GIB, gpu, inventory

from r4b_deploy.errors import InfeasibleError
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan


def test_utilization_vllm_refuses_is_refused_with_the_nearest_that_starts() -> None:
    # 0.995 x 79.19 GiB = 78.79 GiB, but 78.68 GiB is free after the CUDA context on an idle H100.
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(gpu="H100-80GB", gpu_memory_utilization=0.995))
    assert info.value.exit_code == 3
    assert "refuses to start" in info.value.message
    assert "--gpu-memory-utilization 0.99" in (info.value.fix or "")
    assert make_plan(PlanRequest(gpu="H100-80GB", gpu_memory_utilization=0.99)).vllm.gpu_memory_utilization == 0.99


def test_tensor_parallel_leaves_room_for_nccl() -> None:
    # 8x A100 40 GB at 0.98: NCCL's ~1.5 GiB leaves 37.8 GiB free, 38.6 GiB asked: tp8 cannot start.
    plan = make_plan(PlanRequest(gpu="A100-40GB:8", gpu_memory_utilization=0.98))
    assert plan.vllm.tensor_parallel_size == 1
    with pytest.raises(InfeasibleError, match="refuses to start"):
        make_plan(PlanRequest(gpu="A100-40GB:8", gpu_memory_utilization=0.98, profile="tp8"))


@pytest.mark.parametrize(
    ("spec", "profile", "reduced", "max_model_len"),
    [
        ("16GiB@8.9", "light", True, 16384),
        ("12GiB@8.6", "light", True, 2048),  # the reduced plan: 2,048 tokens, CUDA graphs off
        ("12GB@8.6:8", "tp8", True, 40960),
        ("48GiB@8.9", "medium", False, 32768),
    ],
)
def test_unlisted_card_gets_a_plan(spec: str, profile: str, reduced: bool, max_model_len: int) -> None:
    plan = make_plan(PlanRequest(gpu=spec))
    assert (plan.profile, plan.reduced, plan.vllm.max_model_len) == (profile, reduced, max_model_len)
    assert plan.memory.kv_tokens >= plan.vllm.max_model_len


@pytest.mark.parametrize("spec", ["8GiB@8.9", "8GB@8.6:1"])
def test_eight_gigabyte_card_refused_with_the_shortfall(spec: str) -> None:
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(gpu=spec))
    assert info.value.exit_code == 3
    assert "short by" in info.value.message


def test_float16_on_a_pre_ampere_unlisted_card() -> None:
    plan = make_plan(PlanRequest(gpu="32GiB@7.0"))
    assert plan.vllm.dtype == "float16"


def test_busy_second_gpu_of_a_tensor_parallel_plan_is_refused() -> None:
    """Every GPU the plan uses is judged by vLLM's start-up rule, not only the one planned for: the
    free-memory warning compared NVML's total x utilization and let a plan through that would not start."""
    idle = gpu(0, "H100-80GB", 81559, "9.0", memory_free_bytes=80 * GIB)
    busy = gpu(1, "H100-80GB", 81559, "9.0", memory_free_bytes=40 * GIB)
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(tensor_parallel_size=2), inventory(idle, busy, source="nvml"))
    assert info.value.exit_code == 3
    assert "GPU 1" in info.value.message and "free at start-up" in info.value.message
    assert "has 42.9 GB free" in info.value.message
    fix = info.value.fix or ""
    assert "nvidia-smi" in fix and "at least" not in fix
    lowered = float(re.search(r"lower --gpu-memory-utilization to (0\.\d+)", fix).group(1))
    plan = make_plan(
        PlanRequest(tensor_parallel_size=2, gpu_memory_utilization=lowered), inventory(idle, busy, source="nvml")
    )
    assert plan.vllm.tensor_parallel_size == 2
    with pytest.raises(InfeasibleError):
        make_plan(
            PlanRequest(tensor_parallel_size=2, gpu_memory_utilization=round(lowered + 0.01, 2)),
            inventory(idle, busy, source="nvml"),
        )


def test_busy_gpu_refusal_says_free_memory_not_a_bigger_gpu() -> None:
    """An 80 GB GPU held by other processes is not too small: the fix frees memory or lowers the share."""
    busy = gpu(0, "A100-80GB", 81920, "8.0", memory_free_bytes=30 * GIB)
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(), inventory(busy, source="nvml"))
    fix = info.value.fix or ""
    assert "at least 24 GB" not in fix
    assert "nvidia-smi" in fix and re.search(r"lower --gpu-memory-utilization to 0\.\d+", fix)
