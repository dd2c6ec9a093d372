"""Planning a model other than R-4B: the Qwen3-VL spec, folders read from their files, and the
options that issue 9 adds (--max-num-batched-tokens, --tensor-parallel-size)."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_folders import LLAMA_CONFIG, LLAMA_PARAMETERS, QWEN3_CONFIG, THINK_TEMPLATE, model_folder
from planning_helpers import flag_value, plan_args

from r4b_deploy.errors import InfeasibleError, UsageError
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import _check_release, make_plan
from r4b_deploy.spec import named_spec

QWEN3_VL = "qwen3-vl-4b-thinking"


@pytest.mark.parametrize(
    ("gpu", "profile", "max_model_len", "images"),
    [("L4", "light", 16384, 1), ("H100", "heavy", 40960, 3)],
)
def test_qwen3_vl_spec_plans(gpu: str, profile: str, max_model_len: int, images: int) -> None:
    plan = make_plan(PlanRequest(gpu=gpu, model=QWEN3_VL))
    spec = named_spec(QWEN3_VL)
    assert (plan.profile, plan.reduced) == (profile, False)
    v = plan.vllm
    assert (v.max_model_len, v.images_per_prompt) == (max_model_len, images)
    assert plan.memory.kv_tokens >= max_model_len  # (L4: 61,216, H100: 412,512 with memory.yaml of 2026-12-01)
    assert plan.memory.kv_bytes_per_token == 2 * 36 * 8 * 128 * 2  # 147,456 B, as R-4B
    assert plan.memory.weights_bytes == spec.parameters * 2
    # The one profiled image: 16,384 tokens x 2,560 x 4 (deepstack) x 2 B stays cached through the LM's run.
    assert plan.memory.vision_encoder_bytes == 16384 * 2560 * 4 * 2
    assert (plan.model_id, plan.model_name, plan.model_architecture) == (
        "Qwen/Qwen3-VL-4B-Thinking",
        "Qwen3-VL-4B-Thinking",
        "Qwen3VLForConditionalGeneration",
    )
    assert plan.thinking_modes == []
    args = plan_args(plan)
    assert args[0] == "Qwen/Qwen3-VL-4B-Thinking"
    assert flag_value(args, "--served-model-name") == "qwen3-vl-4b-thinking"
    assert flag_value(args, "--reasoning-parser") == "deepseek_r1"
    assert "--trust-remote-code" not in args
    assert any(r.startswith("Model Qwen3-VL-4B-Thinking (Qwen3VLForConditionalGeneration") for r in plan.reasons)


def test_r4b_stays_the_default() -> None:
    plan = make_plan(PlanRequest(gpu="L4"))
    assert (plan.model_id, plan.model_name, plan.thinking_modes) == ("YannQi/R-4B", "R-4B", ["auto", "long", "short"])
    args = plan_args(plan)
    assert "--trust-remote-code" in args and flag_value(args, "--reasoning-parser") == "qwen3"


def test_text_only_folder_plans_without_images(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "Llama-3.1-8B", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    plan = make_plan(PlanRequest(gpu="H100", model=str(folder)))
    v = plan.vllm
    assert v.images_per_prompt == 0 and not v.multimodal
    assert plan.memory.vision_encoder_bytes == 0
    assert plan.memory.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    args = plan_args(plan)
    assert args[0] == str(folder.resolve())
    assert "--limit-mm-per-prompt" not in args  # vLLM refuses it for a text-only model
    assert "--reasoning-parser" not in args and "--trust-remote-code" not in args
    assert flag_value(args, "--served-model-name") == "llama-3.1-8b"


def test_a_folder_s_short_context_bounds_every_tier(tmp_path: Path) -> None:
    config = {**QWEN3_CONFIG, "max_position_embeddings": 8192}
    folder = model_folder(tmp_path, "q", config, parameters=600_000_000, template=THINK_TEMPLATE)
    plan = make_plan(PlanRequest(gpu="H100", model=str(folder)))
    assert plan.vllm.max_model_len == 8192
    assert all(t.max_model_len <= 8192 for t in plan.tiers)
    assert plan.vllm.reasoning_parser == "qwen3"
    with pytest.raises(UsageError, match="exceeds q's max_position_embeddings 8192"):
        make_plan(PlanRequest(gpu="H100", model=str(folder), max_model_len=16384))


def test_images_for_a_text_only_model_are_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "llama", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    with pytest.raises(UsageError, match="llama is a text-only model"):
        make_plan(PlanRequest(gpu="H100", model=str(folder), images_per_prompt=1))


def test_a_model_too_large_for_the_gpu_is_infeasible_naming_it(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "Big", LLAMA_CONFIG, parameters=30_000_000_000)
    with pytest.raises(InfeasibleError, match=r"^Big cannot be served on 1× L4"):
        make_plan(PlanRequest(gpu="L4", model=str(folder)))


def test_the_rehearsal_takes_no_model() -> None:
    with pytest.raises(UsageError, match="--model applies to GPU images"):
        make_plan(PlanRequest(rehearsal=True, model=QWEN3_VL))


def test_max_num_batched_tokens_override() -> None:
    plan = make_plan(PlanRequest(gpu="L4", max_num_batched_tokens=4096))
    assert plan.vllm.max_num_batched_tokens == 4096
    assert "max_num_batched_tokens 4096: set with --max-num-batched-tokens." in plan.reasons
    # The tier's sequences yield to a smaller token budget; the user's own never silently.
    assert make_plan(PlanRequest(gpu="L4", max_num_batched_tokens=4)).vllm.max_num_seqs == 4
    with pytest.raises(UsageError, match="--max-num-seqs 64 exceeds --max-num-batched-tokens 32"):
        make_plan(PlanRequest(gpu="L4", max_num_batched_tokens=32, max_num_seqs=64))


def test_tensor_parallel_size_puts_the_tiers_on_that_many_gpus() -> None:
    plan = make_plan(PlanRequest(gpu="L4:2", tensor_parallel_size=2))
    assert plan.vllm.tensor_parallel_size == 2 and plan.gpu_indices == [0, 1]
    assert {t.gpu_count for t in plan.tiers} == {2}  # tp8 stays at its own size: left out
    assert flag_value(plan_args(plan), "--tensor-parallel-size") == "2"
    with pytest.raises(UsageError, match="no tier fits R-4B's 32 attention and 8 KV heads at tensor parallelism 3"):
        make_plan(PlanRequest(gpu="L4:3", tensor_parallel_size=3))
    with pytest.raises(InfeasibleError, match="profiles need \\[2\\]"):
        make_plan(PlanRequest(gpu="L4", tensor_parallel_size=2))


def test_a_folder_takes_no_revision(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "llama", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    with pytest.raises(UsageError, match="--revision main: the model is the folder"):
        make_plan(PlanRequest(gpu="H100", model=str(folder), revision="main"))


def test_a_release_older_than_the_model_is_refused() -> None:
    newer = named_spec(QWEN3_VL).model_copy(update={"min_vllm_version": "9.0.0"})
    with pytest.raises(UsageError, match=r"needs vLLM 9\.0\.0 or later; the plan's release is 0\.33\.0"):
        _check_release(newer, "0.33.0")
    _check_release(named_spec(QWEN3_VL), "0.33.0")
