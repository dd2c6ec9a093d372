"""vLLM's own start-up rules, which the planner must not promise past (issue 9): the budget is a share
of the total CUDA reports and must be free after the CUDA context; an unlisted card described by
its memory and compute capability is planned by the same arithmetic."""

from __future__ import annotations

import pytest

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
