"""Every GPU in the catalog, alone and eight at a time: the chosen tier and the invariants any
plan must keep (vLLM would refuse a plan that breaks one)."""

from __future__ import annotations

import json
import math

import pytest
from planning_helpers import flag_value, plan_args

from r4b_deploy.errors import InfeasibleError
from r4b_deploy.hardware.catalog import catalog, inventory_from_catalog
from r4b_deploy.launch.args import CONTAINER_PORT
from r4b_deploy.planning.coefficients import memory_model
from r4b_deploy.planning.plan import Plan, PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.spec import model_spec

SPEC = model_spec()
CATALOG_NAMES = [entry.name for entry in catalog()]

# The tier each catalog GPU gets alone (documented tiers table), and whether it is a reduced plan.
EXPECTED_SINGLE = {
    "T4": ("light", True),  # 16 GB: below light's 24 GB minimum, still serves
    "V100-32GB": ("light", False),
    "A10": ("light", False),
    "A10G": ("light", False),
    "RTX-3090": ("light", False),
    "L4": ("light", False),
    "RTX-4090": ("light", False),
    "RTX-A6000": ("medium", False),
    "A40": ("medium", False),
    "A100-40GB": ("medium", False),
    "RTX-6000-ADA": ("medium", False),
    "L40": ("medium", False),
    "L40S": ("medium", False),
    "A100-80GB": ("heavy", False),
    "H100-80GB": ("heavy", False),
    "H100-NVL": ("heavy", False),
    "H200": ("heavy", False),
    # Cards added with issue 9: 12-16 GB ones get a reduced light plan, the rest their tier.
    "RTX-3060-12GB": ("light", True),
    "RTX-4070": ("light", True),
    "A2": ("light", True),
    "A16": ("light", True),
    "RTX-4060-TI-16GB": ("light", True),
    "RTX-4080": ("light", True),
    "RTX-5090": ("light", False),
    "L20": ("medium", False),
    "H20": ("heavy", False),
    "GH200": ("heavy", False),
    "RTX-PRO-6000-BLACKWELL": ("heavy", False),
    "B200": ("heavy", False),
}
# 8 GB: R-4B's 9 GiB of weights do not fit; refused with the shortfall (exit 3).
REFUSED_SINGLE = {"RTX-4060"}
# Below tp8's documented 16 GB minimum: eight of them get tp8 reduced (its full context beats one
# GPU's 2,048-token light plan).
BELOW_TP8_MINIMUM = {"RTX-3060-12GB", "RTX-4070"}


def check_invariants(plan: Plan) -> None:
    v, m = plan.vllm, plan.memory
    lm = SPEC.language_model
    # One full max_model_len sequence fits the KV cache.
    assert m.kv_cache_bytes > 0
    assert m.kv_tokens >= v.max_model_len
    assert v.max_model_len <= lm.max_position_embeddings
    # Tensor parallelism divides the attention and KV heads; each replica uses that many GPUs, its own.
    assert lm.num_attention_heads % v.tensor_parallel_size == 0
    assert lm.num_key_value_heads % v.tensor_parallel_size == 0
    assert len(plan.gpu_indices) == v.tensor_parallel_size * plan.replica_count
    assert len(set(plan.gpu_indices)) == len(plan.gpu_indices)
    assert set(plan.gpu_indices) <= {g.index for g in plan.gpus}
    # bf16 only where every GPU has it.
    lowest = min(g.compute_capability_tuple for g in plan.gpus)
    bf16_ok = lowest >= tuple(int(x) for x in SPEC.min_compute_capability_bf16.split("."))
    assert v.dtype == ("bfloat16" if bf16_ok else "float16")
    # The budget arithmetic adds up exactly, on the weakest GPU's CUDA-visible total (issue 9: vLLM's
    # budget is a share of what CUDA reports, below NVML's total; it was NVML's total before).
    assert m.gpu_memory_bytes < min(g.memory_total_bytes for g in plan.gpus)
    assert m.budget_bytes == math.ceil(m.gpu_memory_bytes * v.gpu_memory_utilization)
    # vLLM starts: the budget (and graphs captured above it) is free after the CUDA context.
    assert m.start_free_bytes is not None
    assert m.budget_bytes + m.cuda_graph_headroom_bytes <= m.start_free_bytes
    parts = m.weights_bytes + m.activation_bytes + m.vision_encoder_bytes + m.non_torch_bytes + m.cuda_graph_bytes
    assert parts + m.kv_cache_bytes == m.budget_bytes
    block = memory_model().kv_block_size_tokens
    assert m.kv_tokens == m.kv_cache_bytes // (block * m.kv_bytes_per_token) * block
    assert m.max_concurrency == round(m.kv_tokens / v.max_model_len, 2)
    assert (m.cuda_graph_bytes + m.cuda_graph_headroom_bytes == 0) == v.enforce_eager
    # vLLM refuses fewer batched tokens than sequences.
    assert v.max_num_batched_tokens >= v.max_num_seqs
    # The argument list: model first, host/port last, every setting as the Plan says.
    args = plan_args(plan)
    assert args[0] == SPEC.model_id == v.model
    assert args[-4:] == ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]
    assert flag_value(args, "--served-model-name") == SPEC.served_model_name
    assert ("--trust-remote-code" in args) == SPEC.trust_remote_code
    assert flag_value(args, "--dtype") == v.dtype
    assert flag_value(args, "--max-model-len") == str(v.max_model_len)
    assert flag_value(args, "--max-num-seqs") == str(v.max_num_seqs)
    assert flag_value(args, "--max-num-batched-tokens") == str(v.max_num_batched_tokens)
    assert float(flag_value(args, "--gpu-memory-utilization")) == v.gpu_memory_utilization
    assert flag_value(args, "--tensor-parallel-size") == (
        str(v.tensor_parallel_size) if v.tensor_parallel_size > 1 else None
    )
    assert flag_value(args, "--kv-cache-dtype") == (None if v.kv_cache_dtype == "auto" else v.kv_cache_dtype)
    assert json.loads(flag_value(args, "--limit-mm-per-prompt")) == {
        "image": v.images_per_prompt,
        "video": 0,
    }
    assert flag_value(args, "--limit-mm-per-prompt") == json.dumps(
        {"image": v.images_per_prompt, "video": 0}, separators=(",", ":")
    )
    assert flag_value(args, "--reasoning-parser") == SPEC.reasoning_parser
    assert not any("key" in a.lower() for a in args)
    # Exactly one tier is marked chosen, and it is the plan's profile.
    assert [t.name for t in plan.tiers if t.chosen] == [plan.profile]


def test_expectations_cover_the_catalog() -> None:
    # A GPU added to the catalog gets its invariants checked below; say which tier it should get here.
    expected = set(EXPECTED_SINGLE) | REFUSED_SINGLE
    assert set(CATALOG_NAMES) <= expected, set(CATALOG_NAMES) - expected


@pytest.mark.parametrize("name", sorted(REFUSED_SINGLE))
@pytest.mark.parametrize("count", [1, 8])
def test_too_small_gpu_refused_with_shortfall(name: str, count: int) -> None:
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(gpu=f"{name}:{count}"))
    assert info.value.exit_code == 3
    assert "short by" in info.value.message


SERVING_NAMES = [n for n in CATALOG_NAMES if n not in REFUSED_SINGLE]


@pytest.mark.parametrize("name", SERVING_NAMES)
def test_single_gpu_plan(name: str) -> None:
    plan = make_plan(PlanRequest(gpu=name))
    check_invariants(plan)
    assert plan.inventory_source == "catalog"
    assert plan.replicas is None
    if name in EXPECTED_SINGLE:
        assert (plan.profile, plan.reduced) == EXPECTED_SINGLE[name]
    if plan.reduced:
        assert any("below profile" in w for w in plan.warnings)


@pytest.mark.parametrize("name", sorted(BELOW_TP8_MINIMUM))
def test_eight_gpus_below_tp8_minimum_get_tp8_reduced(name: str) -> None:
    plan = make_plan(PlanRequest(gpu=f"{name}:8"))
    check_invariants(plan)
    assert (plan.profile, plan.reduced, plan.vllm.max_model_len) == ("tp8", True, 40960)


@pytest.mark.parametrize("name", [n for n in SERVING_NAMES if n not in BELOW_TP8_MINIMUM])
def test_eight_gpus_run_one_replica_per_gpu_unless_one_gpu_is_reduced(name: str) -> None:
    """Issue 10: the replica advice is the decision. Eight GPUs that each hold their tier unreduced
    run eight one-GPU replicas; where one GPU holds only a reduced plan, tp8 stays the choice."""
    plan = make_plan(PlanRequest(gpu=f"{name}:8"))
    check_invariants(plan)
    single, single_reduced = EXPECTED_SINGLE[name]
    advice = plan.replicas
    assert advice is not None
    if single_reduced:
        assert (plan.profile, plan.replica_count) == ("tp8", 1)
        assert not advice.prefer_replicas
        return
    assert (plan.profile, plan.replica_count, plan.vllm.tensor_parallel_size) == (single, 8, 1)
    assert plan.replica_gpu_indices() == [[i] for i in range(8)]
    assert advice.prefer_replicas and advice.replica_profile == single
    assert "the plan runs them" in advice.summary


@pytest.mark.parametrize("name", [n for n in SERVING_NAMES if n not in BELOW_TP8_MINIMUM])
def test_eight_gpu_tp8_plan_carries_replica_advice(name: str) -> None:
    plan = make_plan(PlanRequest(gpu=f"{name}:8", profile="tp8"))
    check_invariants(plan)
    assert plan.profile == "tp8"
    assert plan.replica_count == 1
    assert plan.vllm.tensor_parallel_size == 8
    assert plan.vllm.gpu_memory_utilization == 0.8
    advice = plan.replicas
    assert advice is not None
    assert advice.gpus_available == advice.gpus_used == 8
    single_reduced = EXPECTED_SINGLE.get(name, ("", False))[1]
    assert advice.prefer_replicas is not single_reduced
    if advice.prefer_replicas:
        assert advice.replicas == 8
        assert advice.replicas_total_kv_tokens == 8 * advice.replica_kv_tokens
        assert advice.replicas_total_seq_slots == 8 * advice.replica_max_num_seqs
        assert advice.replica_max_model_len <= plan.vllm.max_model_len
        assert "drop --profile tp8 and the plan runs them" in advice.summary


@pytest.mark.parametrize("name", SERVING_NAMES)
def test_catalog_inventory_and_given_inventory_plan_alike(name: str) -> None:
    inventory = inventory_from_catalog(name)
    assert make_plan(PlanRequest(), inventory) == make_plan(PlanRequest(gpu=name))
