"""User overrides: those that fit land in the argument list; those that do not are refused with
the nearest value that does, and that value really does fit."""

from __future__ import annotations

import re

import pytest
from planning_helpers import flag_value, plan_args, same

from r4b_deploy.errors import InfeasibleError, UsageError
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan

L4 = same(1)
T4 = same(1, "T4", 15360, "7.5")


@pytest.mark.parametrize(
    ("override", "flag", "expected"),
    [
        ({"max_model_len": 8192}, "--max-model-len", "8192"),
        ({"max_num_seqs": 32}, "--max-num-seqs", "32"),
        ({"gpu_memory_utilization": 0.9}, "--gpu-memory-utilization", "0.9"),
        ({"kv_cache_dtype": "fp8"}, "--kv-cache-dtype", "fp8"),
        ({"images_per_prompt": 0}, "--limit-mm-per-prompt", '{"image":0,"video":0}'),
        ({"images_per_prompt": 2}, "--limit-mm-per-prompt", '{"image":2,"video":0}'),
    ],
)
def test_override_lands_in_args(override: dict, flag: str, expected: str) -> None:
    plan = make_plan(PlanRequest(**override), L4)
    assert flag_value(plan_args(plan), flag) == expected
    assert plan.memory.kv_tokens >= plan.vllm.max_model_len


def test_fp8_kv_doubles_tokens() -> None:
    auto = make_plan(PlanRequest(), L4).memory
    fp8 = make_plan(PlanRequest(kv_cache_dtype="fp8"), L4).memory
    assert fp8.kv_bytes_per_token * 2 == auto.kv_bytes_per_token
    assert fp8.kv_tokens >= 2 * auto.kv_tokens - 16


def test_more_seqs_than_batched_tokens_raises_batched_tokens() -> None:
    plan = make_plan(PlanRequest(max_num_seqs=3000), L4)  # vLLM's default on an L4: 2048 batched tokens
    assert plan.vllm.max_num_batched_tokens == 3000
    assert any("raised from vLLM's default" in r for r in plan.reasons)


def test_max_model_len_beyond_model_is_usage_error() -> None:
    with pytest.raises(UsageError, match="max_position_embeddings"):
        make_plan(PlanRequest(max_model_len=40961), same(1, "H200", 143771, "9.0"))


def test_user_max_model_len_is_never_shrunk() -> None:
    plan = make_plan(PlanRequest(max_model_len=40960), L4)
    assert plan.vllm.max_model_len == 40960
    assert not plan.vllm.enforce_eager  # reliefs are for GPUs below every minimum, not for L4


def nearest(fix: str, flag: str) -> str:
    found = re.search(re.escape(flag) + r" ([0-9.a-z]+)", fix)
    assert found, fix
    return found.group(1)


@pytest.mark.parametrize(
    ("inv", "request_kwargs", "flag", "field", "step"),
    [
        # Issue 9: vLLM profiles one image whatever --limit-mm-per-prompt says, so images no longer
        # cost memory (L4 with 4 images at 40,960 tokens now fits): the refusals move to the T4.
        (T4, {"max_model_len": 32768, "images_per_prompt": 4}, "--max-model-len", "max_model_len", 1),
        (T4, {"max_num_seqs": 100_000}, "--max-num-seqs", "max_num_seqs", 1),
        (L4, {"max_num_seqs": 100_000}, "--max-num-seqs", "max_num_seqs", 1),
        (L4, {"gpu_memory_utilization": 0.5}, "--gpu-memory-utilization", "gpu_memory_utilization", -0.01),
        (T4, {"gpu_memory_utilization": 0.5}, "--gpu-memory-utilization", "gpu_memory_utilization", -0.01),
        (T4, {"max_model_len": 24576}, "--max-model-len", "max_model_len", 1),
    ],
)
def test_override_refused_with_nearest_fit(inv, request_kwargs: dict, flag: str, field: str, step: float) -> None:
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(**request_kwargs), inv)
    message, fix = info.value.message, info.value.fix or ""
    assert flag in message and "short by" in message
    value_text = nearest(fix, flag)
    value = float(value_text) if "." in value_text else int(value_text)
    # The nearest value fits ...
    plan = make_plan(PlanRequest(**{**request_kwargs, field: value}), inv)
    assert plan.memory.kv_tokens >= plan.vllm.max_model_len
    # ... and one step further toward the user's value does not.
    further = round(value + step, 2) if isinstance(value, float) else value + step
    with pytest.raises(InfeasibleError):
        make_plan(PlanRequest(**{**request_kwargs, field: further}), inv)


def test_kv_dtype_refusal_suggests_fp8() -> None:
    # Issue 9 moved L4's KV cache above 40,960 tokens: the T4 is now the GPU this is refused on.
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(kv_cache_dtype="auto", max_model_len=32768, images_per_prompt=3), T4)
    assert "--kv-cache-dtype fp8" in (info.value.fix or "")
    plan = make_plan(PlanRequest(kv_cache_dtype="fp8", max_model_len=32768, images_per_prompt=3), T4)
    assert plan.memory.kv_tokens >= 32768
