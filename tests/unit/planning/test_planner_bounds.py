"""The planning options' bounds: a value vLLM could not serve with is the user's to correct (exit 4)."""

from __future__ import annotations

import pytest
from planning_helpers import same

from r4b_deploy.errors import ExitCode, UsageError
from r4b_deploy.planning import memory
from r4b_deploy.planning.coefficients import memory_model
from r4b_deploy.planning.plan import MIN_GPU_MEMORY_UTILIZATION, PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.spec import model_spec

L4 = same(1)
H200 = same(1, "H200", 143771, "9.0")


def min_max_model_len(images_per_prompt: int | None) -> int:
    return memory.min_max_model_len(model_spec(), memory_model(), images_per_prompt)


def test_the_context_floor_is_one_one_tile_image_and_one_block() -> None:
    block = memory_model().kv_block_size_tokens
    one_tile = model_spec().vision.one_tile_image_tokens
    assert min_max_model_len(images_per_prompt=1) == one_tile + block
    assert min_max_model_len(images_per_prompt=None) == one_tile + block  # the tiers all take images
    assert min_max_model_len(images_per_prompt=0) == block


@pytest.mark.parametrize("request_kwargs", [{"max_model_len": 1}, {"max_model_len": 1500, "images_per_prompt": 2}])
def test_a_context_below_one_image_is_refused(request_kwargs: dict) -> None:
    floor = min_max_model_len(images_per_prompt=1)
    with pytest.raises(UsageError, match=rf"--max-model-len {request_kwargs['max_model_len']}: .*at least {floor:,}"):
        make_plan(PlanRequest(**request_kwargs), H200)
    plan = make_plan(PlanRequest(max_model_len=floor), H200)
    assert plan.vllm.max_model_len == floor


def test_a_text_only_context_needs_one_block() -> None:
    block = memory_model().kv_block_size_tokens
    with pytest.raises(UsageError, match=rf"at least {block}"):
        make_plan(PlanRequest(max_model_len=block - 1, images_per_prompt=0), L4)
    assert make_plan(PlanRequest(max_model_len=block, images_per_prompt=0), L4).vllm.max_model_len == block


def test_the_rehearsal_context_needs_one_block() -> None:
    block = memory_model().kv_block_size_tokens
    with pytest.raises(UsageError, match=rf"at least {block}"):
        make_plan(PlanRequest(rehearsal=True, max_model_len=1))


@pytest.mark.parametrize("value", [1e-300, 5e-324, MIN_GPU_MEMORY_UTILIZATION / 2])
def test_a_vanishing_gpu_memory_utilization_is_a_usage_error(value: float) -> None:
    # It used to reach the arithmetic: total / 1e-300 overflowed (exit 70).
    from r4b_deploy.cli.options import plan_request_from

    with pytest.raises(UsageError, match=rf"greater than or equal to {MIN_GPU_MEMORY_UTILIZATION}") as err:
        make_plan(plan_request_from(gpu_memory_utilization=value), L4)
    assert err.value.exit_code == ExitCode.USAGE


def test_the_smallest_gpu_memory_utilization_is_refused_as_infeasible_not_a_crash() -> None:
    from r4b_deploy.errors import InfeasibleError

    with pytest.raises(InfeasibleError):
        make_plan(PlanRequest(gpu_memory_utilization=MIN_GPU_MEMORY_UTILIZATION), H200)


def test_more_images_than_the_context_holds_is_refused() -> None:
    spec = model_spec()
    most = spec.language_model.max_position_embeddings // spec.vision.one_tile_image_tokens
    for request in (PlanRequest(images_per_prompt=10**30), PlanRequest(rehearsal=True, images_per_prompt=most + 1)):
        with pytest.raises(UsageError, match=rf"--images-per-prompt {request.images_per_prompt}: at most {most}"):
            make_plan(request, H200)
