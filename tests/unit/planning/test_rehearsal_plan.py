"""The CPU rehearsal plan: the tiny model, the verified flags, no GPU settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from planning_helpers import flag_value, plan_args

from r4b_deploy.errors import UsageError
from r4b_deploy.paths import profiles_dir
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.spec import model_spec

VLLM_YAML = yaml.safe_load((profiles_dir() / "vllm.yaml").read_text())
REHEARSAL_YAML = yaml.safe_load((profiles_dir() / "tiers" / "rehearsal.yaml").read_text())


def test_rehearsal_args() -> None:
    plan = make_plan(PlanRequest(rehearsal=True))
    args = plan_args(plan)
    assert args[0] == "/models/tiny-r4b" == plan.vllm.model
    assert flag_value(args, "--served-model-name") == model_spec().served_model_name
    assert flag_value(args, "--max-model-len") == str(VLLM_YAML["rehearsal"]["max_model_len"])
    assert flag_value(args, "--dtype") == "bfloat16"
    assert "--enforce-eager" in args
    assert json.loads(flag_value(args, "--limit-mm-per-prompt")) == {"image": 2, "video": 0}
    assert flag_value(args, "--limit-mm-per-prompt") == '{"image":2,"video":0}'
    assert flag_value(args, "--reasoning-parser") == model_spec().reasoning_parser
    assert args[-4:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert "--gpu-memory-utilization" not in args
    assert "--tensor-parallel-size" not in args
    assert ("--trust-remote-code" in args) == REHEARSAL_YAML["trust_remote_code"]


def test_rehearsal_plan_fields() -> None:
    plan = make_plan(PlanRequest(rehearsal=True))
    assert plan.rehearsal and plan.profile == "rehearsal"
    assert plan.gpus == [] and plan.gpu_indices == []
    assert plan.inventory_source == "rehearsal"
    assert plan.memory.budget_bytes == 0 and plan.memory.weights_bytes == 0  # no GPU terms
    assert any("VLLM_CPU_KVCACHE_SPACE" in r for r in plan.reasons)
    assert plan.vllm.max_num_batched_tokens >= plan.vllm.max_model_len


def test_rehearsal_plan_predicts_the_cpu_builds_kv_tokens() -> None:
    """The CPU build's KV cache is VLLM_CPU_KVCACHE_SPACE GiB in 128-token blocks of the tiny model's
    KV bytes per token (2 x layers x KV heads x head_dim x 2 B): what its log reports (2,097,152 tokens)."""
    from r4b_deploy.rehearsal.tiny_model import TEXT

    plan = make_plan(PlanRequest(rehearsal=True))
    per_token = 2 * TEXT["num_hidden_layers"] * TEXT["num_key_value_heads"] * TEXT["head_dim"] * 2
    space = int(VLLM_YAML["rehearsal"]["env"]["VLLM_CPU_KVCACHE_SPACE"]) * 1024**3
    assert plan.memory.kv_bytes_per_token == per_token == 512
    assert plan.memory.kv_cache_bytes == space
    assert plan.memory.kv_tokens == space // per_token == 2_097_152
    assert plan.memory.max_concurrency == plan.memory.kv_tokens / plan.vllm.max_model_len
    # A length that is not a whole number of blocks: vLLM counts whole-block requests x the length.
    short = make_plan(PlanRequest(rehearsal=True, max_model_len=1000)).memory
    assert short.max_concurrency == space // per_token // 128 / 8 and short.kv_tokens == 2048 * 1000


def test_profile_rehearsal_is_the_rehearsal() -> None:
    assert make_plan(PlanRequest(profile="rehearsal")) == make_plan(PlanRequest(rehearsal=True))


def test_rehearsal_overrides() -> None:
    plan = make_plan(PlanRequest(rehearsal=True, max_model_len=1024, images_per_prompt=1, max_num_seqs=4))
    assert flag_value(plan_args(plan), "--max-model-len") == "1024"
    assert flag_value(plan_args(plan), "--max-num-seqs") == "4"
    assert flag_value(plan_args(plan), "--limit-mm-per-prompt") == '{"image":1,"video":0}'


@pytest.mark.parametrize(
    "kwargs",
    [{"gpu": "L4"}, {"gpu_memory_utilization": 0.9}, {"kv_cache_dtype": "fp8"}, {"profile": "light"}],
)
def test_gpu_options_refused_with_rehearsal(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        make_plan(PlanRequest(rehearsal=True, **kwargs))


def test_planning_and_rendering_the_rehearsal_read_pins_without_the_venv_builder() -> None:
    # The pins are data (r4b_deploy.pins); rehearsal/vllm_cpu.py builds venvs and is loaded only to build one.
    code = (
        "import sys\n"
        "from r4b_deploy.planning.plan import PlanRequest\n"
        "from r4b_deploy.planning.planner import make_plan\n"
        "from r4b_deploy.render.deployment import render_files\n"
        "from r4b_deploy.render.options import RenderOptions\n"
        "render_files(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), '/srv/r4b-check')\n"
        "print('r4b_deploy.rehearsal.vllm_cpu' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
