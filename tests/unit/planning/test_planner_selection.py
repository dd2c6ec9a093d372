"""Which tier the planner picks and why: reduced plans, refusals with the shortfall, several and
mixed GPUs, forced profiles, warnings from measured inventories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from planning_helpers import GB, GIB, MIB, gpu, inventory, plan_args, same

from r4b_deploy.errors import ExitCode, InfeasibleError, UsageError
from r4b_deploy.planning.coefficients import memory_model
from r4b_deploy.planning.memory import gib_to_bytes
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan


def shortfall_gb(message: str) -> float:
    found = re.search(r"short by ([0-9.]+) GB", message)
    assert found, message
    return float(found.group(1))


def test_t4_gets_a_reduced_light_plan() -> None:
    plan = make_plan(PlanRequest(), same(1, "T4", 15360, "7.5"))
    assert plan.profile == "light"
    assert plan.reduced
    assert plan.vllm.dtype == "float16"
    # Issue 9: vLLM's real peak (~0.2 GiB at light's settings, not 1.6) leaves a T4 light's whole
    # 16,384-token context once CUDA graphs are off; it used to shrink to 8,192.
    assert plan.vllm.max_model_len == 16384
    assert plan.vllm.enforce_eager
    assert plan.memory.kv_tokens >= plan.vllm.max_model_len
    text = " ".join(plan.warnings)
    assert "below profile light's documented minimum" in text
    assert "float16" in text
    assert "Reduced: CUDA graphs off" in text
    assert any(u.startswith("light at its documented minimum") for u in plan.upgrades)


@pytest.mark.parametrize("memory_gib", [8, 11])
def test_too_small_gpu_is_infeasible_with_true_shortfall(memory_gib: int) -> None:
    small = same(1, "Tiny", memory_gib * 1024, "8.6")
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(), small)
    assert info.value.exit_code == ExitCode.INFEASIBLE
    short = shortfall_gb(info.value.message)
    assert short > 0
    assert info.value.fix
    # The stated shortfall is the truth: that much more memory serves, a little less does not.
    have_mib = memory_gib * 1024
    enough = make_plan(PlanRequest(), same(1, "Tiny", int(have_mib + (short + 0.1) * GB / MIB), "8.6"))
    assert enough.reduced
    with pytest.raises(InfeasibleError):
        make_plan(PlanRequest(), same(1, "Tiny", int(have_mib + (short - 0.2) * GB / MIB), "8.6"))


def test_eight_a100_40gb_forced_tp8_is_told_replicas_serve_more() -> None:
    # Issue 10: without --profile the plan runs the replicas (tests/unit/planning/test_plan_replicas.py).
    plan = make_plan(PlanRequest(profile="tp8"), same(8, "A100-40GB", 40960, "8.0"))
    assert plan.profile == "tp8"
    assert plan.replica_count == 1
    assert plan.vllm.tensor_parallel_size == 8
    assert plan.vllm.gpu_memory_utilization == 0.8
    assert plan.gpu_indices == list(range(8))
    advice = plan.replicas
    assert advice is not None and advice.prefer_replicas
    assert advice.replica_profile == "medium"
    assert advice.replicas == 8
    # Eight single-GPU replicas hold more full sequences and more batch slots than one TP-8 engine.
    assert advice.replicas_total_concurrency > advice.plan_concurrency
    assert advice.replicas_total_seq_slots > advice.plan_seq_slots
    assert "all-reduces" in advice.summary
    assert advice.summary in plan.reasons


def test_four_l4_run_four_replicas_of_light() -> None:
    plan = make_plan(PlanRequest(), same(4))
    assert (plan.profile, plan.replica_count) == ("light", 4)
    assert plan.gpu_indices == [0, 1, 2, 3]
    advice = plan.replicas
    assert advice is not None and advice.prefer_replicas
    assert advice.replicas_total_kv_tokens == 4 * plan.memory.kv_tokens
    assert "data-parallel" in advice.summary
    # --profile light keeps the one engine of before, and says how to get the replicas.
    one = make_plan(PlanRequest(profile="light"), same(4))
    assert (one.replica_count, one.gpu_indices) == (1, [0])
    assert one.replicas is not None and "add --replicas 4 to run them" in one.replicas.summary


def test_eight_t4_prefers_tensor_parallel() -> None:
    plan = make_plan(PlanRequest(), same(8, "T4", 15360, "7.5"))
    assert plan.profile == "tp8"
    assert plan.vllm.dtype == "float16"
    assert plan.replicas is not None and not plan.replicas.prefer_replicas


def test_small_gpus_served_best_by_tensor_parallel() -> None:
    # 12 GiB each: issue 9's arithmetic holds a reduced light plan on one (2,048 tokens, CUDA graphs
    # off, utilization 0.9; it was refused); eight with TP serve tp8's full context, below its 16 GB minimum.
    one = make_plan(PlanRequest(), same(1, "Tiny12", 12 * 1024, "8.6"))
    assert (one.profile, one.reduced, one.vllm.max_model_len) == ("light", True, 2048)
    assert one.vllm.enforce_eager
    plan = make_plan(PlanRequest(), same(8, "Tiny12", 12 * 1024, "8.6"))
    assert (plan.profile, plan.reduced, plan.vllm.max_model_len) == ("tp8", True, 40960)
    assert plan.replicas is not None and not plan.replicas.prefer_replicas


def test_mixed_gpus_planned_on_the_weakest() -> None:
    inv = inventory(gpu(0, "A100-80GB", 81920, "8.0"), gpu(1, "L4", 23034, "8.9"))
    plan = make_plan(PlanRequest(), inv)
    assert plan.profile == "light"
    # The L4's CUDA-visible total: NVML's less the stated margin (issue 9: vLLM's budget is of CUDA's total).
    assert plan.memory.gpu_memory_bytes == 23034 * MIB - gib_to_bytes(memory_model().cuda_total_margin_gib)
    assert any(w.startswith("Mixed GPUs") and "L4" in w for w in plan.warnings)


def test_mixed_compute_capability_falls_back_to_float16() -> None:
    inv = inventory(gpu(0, "A100-80GB", 81920, "8.0"), gpu(1, "V100-32GB", 32768, "7.0"))
    plan = make_plan(PlanRequest(), inv)
    assert plan.vllm.dtype == "float16"
    assert "--dtype" in plan_args(plan) and "float16" in plan_args(plan)


def test_mig_warning() -> None:
    mig = gpu(0, "A100-80GB", 81920, "8.0", mig_enabled=True, memory_free_bytes=79 * GIB)
    plan = make_plan(PlanRequest(), inventory(mig, source="nvml"))
    assert "MIG enabled" in " ".join(plan.warnings)


def test_low_free_memory_is_refused_with_what_must_be_free() -> None:
    """Issue 9: vLLM refuses to start when utilization x total is not free; on a shared GPU NVML's
    free memory is the limit, so the planner refuses instead of warning beside a plan that won't start."""
    busy = gpu(0, "A100-80GB", 81920, "8.0", memory_free_bytes=10 * GIB)
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(), inventory(busy, source="nvml"))
    assert info.value.exit_code == 3
    assert "free at start-up" in info.value.message and "has 10.7 GB free" in info.value.message


def test_enough_free_memory_no_warning() -> None:
    idle = gpu(0, "L4", 23034, "8.9", memory_free_bytes=22 * GIB, mig_enabled=False)
    plan = make_plan(PlanRequest(), inventory(idle, source="nvml"))
    assert plan.warnings == []


@pytest.mark.parametrize(
    ("profile", "inv", "expected"),
    [
        ("light", same(1, "H100-80GB", 81559, "9.0"), ("light", False)),
        ("medium", same(1), ("medium", True)),  # fits by the arithmetic, below the documented minimum
        ("light", same(1, "T4", 15360, "7.5"), ("light", True)),
        ("heavy", same(8, "H100-80GB", 81559, "9.0"), ("heavy", False)),
    ],
)
def test_forced_profile(profile: str, inv, expected: tuple[str, bool]) -> None:
    plan = make_plan(PlanRequest(profile=profile), inv)
    assert (plan.profile, plan.reduced) == expected
    assert plan.vllm.tensor_parallel_size == 1
    chosen = [t for t in plan.tiers if t.chosen]
    assert [t.name for t in chosen] == [profile]
    assert "chosen with --profile" in chosen[0].note


def test_forced_profile_too_big_states_shortfall() -> None:
    with pytest.raises(InfeasibleError) as info:
        # Issue 9 fits heavy's settings on an L4 (by the arithmetic, below its minimum): a T4 is too small.
        make_plan(PlanRequest(profile="heavy"), same(1, "T4", 15360, "7.5"))
    assert shortfall_gb(info.value.message) > 0
    assert "--profile light fits" in info.value.fix


def test_forced_tp8_on_one_gpu() -> None:
    with pytest.raises(InfeasibleError, match="needs 8 GPUs"):
        make_plan(PlanRequest(profile="tp8"), same(1))


def test_unknown_profile_lists_names() -> None:
    with pytest.raises(UsageError) as info:
        make_plan(PlanRequest(profile="huge"), same(1))
    for name in ("light", "medium", "heavy", "tp8"):
        assert name in info.value.message


def test_empty_inventory_is_usage_error() -> None:
    with pytest.raises(UsageError, match="no GPU"):
        make_plan(PlanRequest(), inventory())


def test_tier_table_marks_fits() -> None:
    plan = make_plan(PlanRequest(), same(1, "RTX-A6000", 49140, "8.6"))
    table = {t.name: t for t in plan.tiers}
    assert table["medium"].chosen and table["medium"].fits and table["medium"].meets_minimum
    assert table["light"].fits and not table["light"].chosen
    assert not table["heavy"].meets_minimum
    assert not table["tp8"].fits and table["tp8"].kv_tokens == 0
    assert any(u.startswith("heavy:") for u in plan.upgrades)


def test_plan_from_an_inventory_file(tmp_path: Path) -> None:
    # Resolving the inventory itself: tests/unit/hardware/test_resolve.py.
    path = tmp_path / "inventory.json"
    path.write_text(same(2, "H100-80GB", 81559, "9.0", source="nvml").model_dump_json())
    plan = make_plan(PlanRequest(inventory_file=path))
    assert plan.profile == "heavy" and plan.inventory_source == "file"


def test_gpu_and_inventory_together_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--gpu and --inventory"):
        make_plan(PlanRequest(gpu="L4", inventory_file=tmp_path / "x.json"))
