"""Issue 10: the planner decides how many vLLM engines a host runs behind vLLM's router
(`--replicas N|auto`), on GPUs and in the CPU rehearsal, and `render --target kubernetes` takes
its replica count from the same option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r4b_deploy.cli.main import main
from r4b_deploy.errors import ExitCode, InfeasibleError
from r4b_deploy.planning import rehearsal
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.kubernetes_values import kubernetes_profile

EIGHT_A100_40GB = "A100-40GB:8"


def test_eight_a100_40gb_auto_runs_eight_replicas_of_the_best_single_gpu_tier() -> None:
    plan = make_plan(PlanRequest(gpu=EIGHT_A100_40GB))
    assert (plan.profile, plan.replica_count, plan.vllm.tensor_parallel_size) == ("medium", 8, 1)
    assert plan.gpu_indices == list(range(8))
    assert plan.replica_gpu_indices() == [[i] for i in range(8)]
    advice = plan.replicas
    assert advice is not None and advice.prefer_replicas
    # The issue's figures: 512 batch slots against tp8's 256.
    assert (advice.replicas_total_seq_slots, advice.plan_seq_slots) == (512, 256)
    assert advice.replicas_total_kv_tokens == 8 * plan.memory.kv_tokens
    assert "the plan runs them" in advice.summary and "--replicas 1 or --profile tp8" in advice.summary
    why = plan.reasons[1]
    assert why.startswith("8 replicas × medium behind vLLM's router")
    assert "512 batch slots" in why and "256 slots" in why
    assert "replica 0 on GPU 0" in why and "replica 7 on GPU 7" in why
    assert [t.name for t in plan.tiers if t.chosen] == ["medium"]


@pytest.mark.parametrize(
    "request_",
    [
        PlanRequest(gpu=EIGHT_A100_40GB, profile="tp8"),
        PlanRequest(gpu=EIGHT_A100_40GB, replicas=1),
    ],
    ids=["profile-tp8", "replicas-1"],
)
def test_one_engine_when_forced(request_: PlanRequest) -> None:
    plan = make_plan(request_)
    assert (plan.profile, plan.replica_count, plan.vllm.tensor_parallel_size) == ("tp8", 1, 8)
    assert plan.gpu_indices == list(range(8))
    assert plan.replicas is not None and plan.replicas.prefer_replicas
    assert not any(r.startswith("8 replicas ×") for r in plan.reasons)


def test_replicas_one_is_the_one_engine_plan_of_before() -> None:
    forced = make_plan(PlanRequest(gpu=EIGHT_A100_40GB, profile="tp8"))
    one = make_plan(PlanRequest(gpu=EIGHT_A100_40GB, replicas=1))
    assert (one.vllm, one.memory, one.gpu_indices, one.tiers[-1].kv_tokens) == (
        forced.vllm,
        forced.memory,
        forced.gpu_indices,
        forced.tiers[-1].kv_tokens,
    )
    assert one.replicas is not None and "--replicas 1 keeps one engine" in one.replicas.summary


def test_forced_tensor_parallel_size_keeps_one_engine() -> None:
    plan = make_plan(PlanRequest(gpu=EIGHT_A100_40GB, tensor_parallel_size=2))
    assert (plan.replica_count, plan.vllm.tensor_parallel_size, plan.gpu_indices) == (1, 2, [0, 1])


def test_four_replicas_of_tensor_parallel_two_on_eight_gpus() -> None:
    plan = make_plan(PlanRequest(gpu=EIGHT_A100_40GB, replicas=4, tensor_parallel_size=2))
    assert (plan.replica_count, plan.vllm.tensor_parallel_size) == (4, 2)
    assert plan.replica_gpu_indices() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert "replica 3 on GPUs 6,7" in plan.reasons[1] and "(--replicas 4)" in plan.reasons[1]


def test_explicit_replicas_pick_the_highest_tier_that_n_copies_fit() -> None:
    # Two replicas on eight H100s: each a one-GPU heavy engine (tp8 twice would need 16 GPUs).
    plan = make_plan(PlanRequest(gpu="H100-80GB:8", replicas=2))
    assert (plan.profile, plan.replica_count, plan.gpu_indices) == ("heavy", 2, [0, 1])


@pytest.mark.parametrize(
    ("request_", "needed"),
    [
        (PlanRequest(gpu=EIGHT_A100_40GB, replicas=9), "9 replicas of light (1 GPU each) need 9"),
        (PlanRequest(gpu=EIGHT_A100_40GB, replicas=2, profile="tp8"), "2 replicas of tp8 (8 GPUs each) need 16"),
        (PlanRequest(gpu=EIGHT_A100_40GB, replicas=5, tensor_parallel_size=2), "(2 GPUs each) need 10"),
    ],
)
def test_more_replicas_than_the_gpus_hold_are_refused(request_: PlanRequest, needed: str) -> None:
    with pytest.raises(InfeasibleError) as info:
        make_plan(request_)
    assert info.value.exit_code == ExitCode.INFEASIBLE
    assert needed in info.value.message and "the inventory has 8" in info.value.message
    assert info.value.fix is not None and "--gpu NAME:COUNT" in info.value.fix


def test_one_gpu_auto_is_one_engine() -> None:
    plan = make_plan(PlanRequest(gpu="H100-80GB"))
    assert (plan.replica_count, plan.gpu_indices, plan.replicas) == (1, [0], None)


def test_rehearsal_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rehearsal, "available_cpu_cores", lambda: 2)
    assert make_plan(PlanRequest(rehearsal=True)).replica_count == 1
    plan = make_plan(PlanRequest(rehearsal=True, replicas=2))
    assert (plan.rehearsal, plan.replica_count) == (True, 2)
    assert any("each pinned to its own CPU core" in r for r in plan.reasons)


def test_rehearsal_refuses_more_replicas_than_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rehearsal, "available_cpu_cores", lambda: 2)
    with pytest.raises(InfeasibleError) as info:
        make_plan(PlanRequest(rehearsal=True, replicas=3))
    assert "its own CPU core" in info.value.message and "has 2" in info.value.message
    assert info.value.fix is not None and "--replicas 2" in info.value.fix


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("value", "count"), [("auto", 8), ("AUTO", 8), ("3", 3), ("1", 1)])
def test_the_replicas_option_reaches_the_plan(capsys: pytest.CaptureFixture[str], value: str, count: int) -> None:
    code, out, err = _run(capsys, "plan", "--gpu", EIGHT_A100_40GB, "--replicas", value, "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["replica_count"] == count


@pytest.mark.parametrize("value", ["0", "-2", "x", "2.5", ""])
def test_the_replicas_option_refuses_what_is_not_a_count(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, _, err = _run(capsys, "plan", "--gpu", EIGHT_A100_40GB, "--replicas", value)
    assert code == ExitCode.USAGE
    assert "--replicas" in err


def test_plan_prints_the_replicas_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "plan", "--gpu", EIGHT_A100_40GB)
    assert code == ExitCode.OK, err
    head = " ".join(out.split())[:400]
    assert "8 replicas × medium behind vLLM's router" in head


def test_render_kubernetes_takes_its_replica_count_from_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # More than the one H100 holds on a host: for a cluster, --replicas is the Deployment's count.
    args = ("render", "--target", "kubernetes", "--gpu", "H100", "--json")
    code, out, err = _run(capsys, *args, "--replicas", "3", "--out", str(tmp_path / "three"))
    assert code == ExitCode.OK, err
    assert json.loads(out)["counts"]["replicas"] == 3
    code, out, err = _run(capsys, *args, "--out", str(tmp_path / "auto"))
    assert code == ExitCode.OK, err
    assert json.loads(out)["counts"]["replicas"] == kubernetes_profile().replicas
