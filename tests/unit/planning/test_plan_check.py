"""The plan checked against vLLM's start-up figures: drift per figure, and a warning that names the
term likely wrong. On real logs (tests/fixtures/vllm_logs/): the CPU rehearsal's, and llm-d's
Llama-3.1-8B on an H100 (vLLM 0.19.0, DEBUG), planned through the same `breakdown` R-4B's plans use."""

from __future__ import annotations

from pathlib import Path

from r4b_deploy.planning.coefficients import memory_model
from r4b_deploy.planning.drift import check_log
from r4b_deploy.planning.memory import DeviceMemory, ModelNumbers, breakdown
from r4b_deploy.planning.plan import Plan, PlanRequest, VllmSettings
from r4b_deploy.planning.planner import make_plan

LOGS = Path(__file__).parents[2] / "fixtures" / "vllm_logs"
CPU_LOG = (LOGS / "cpu-0.32.0-rehearsal.log").read_text()
GPU_DEBUG_LOG = (LOGS / "gpu-0.19.0-llama-3.1-8b-h100-debug.log").read_text()
GPU_INFO_LOG = "\n".join(line for line in GPU_DEBUG_LOG.splitlines() if " DEBUG " not in line)
GIB = 1024**3
KV_LIMIT_PCT = memory_model().plan_check.kv_drift_pct


def llama_plan(
    *, kv_bytes_per_element: int = 2, weights_gib: float = 14.99, utilization: float = 0.95, max_model_len: int = 16384
) -> Plan:
    """The logged run as the planner sees it: Llama-3.1-8B's config, vLLM's H100 defaults, CUDA's 79.19 GiB."""
    numbers = ModelNumbers(
        num_hidden_layers=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128_256,
        hidden_size=4096,
        weights_bytes=round(weights_gib * GIB),
        kv_bytes_per_element=kv_bytes_per_element,
    )
    settings = VllmSettings(
        model="meta-llama/Llama-3.1-8B-Instruct",
        served_model_name="llama",
        trust_remote_code=False,
        tensor_parallel_size=1,
        max_model_len=max_model_len,
        max_num_seqs=1024,
        max_num_batched_tokens=8192,
        gpu_memory_utilization=utilization,
        dtype="bfloat16",
        kv_cache_dtype="fp8" if kv_bytes_per_element == 1 else "auto",
        images_per_prompt=0,
    )
    coefficients = memory_model()
    release = coefficients.release_key("0.19.0")
    memory = breakdown(
        numbers,
        DeviceMemory(cuda_total_bytes=round(79.19 * GIB)),
        settings,
        coefficients.releases[release],
        coefficients,
        release,
    )
    return Plan(
        model_id=settings.model,
        profile="calibration",
        inventory_source="catalog",
        gpus=[],
        vllm=settings,
        memory=memory,
    )


def test_the_rehearsal_plan_predicts_the_cpu_build_exactly() -> None:
    check = check_log(make_plan(PlanRequest(rehearsal=True)), CPU_LOG)
    assert check.checked and check.warnings == [] and (check.device, check.vllm_version) == ("CPU", "0.32.0")
    assert [f.name for f in check.figures] == ["kv_tokens", "kv_cache_bytes", "max_concurrency"]
    assert all(f.drift_pct == 0.0 for f in check.figures)
    assert check.figure("kv_tokens").logged == 2_097_152
    assert "KV cache tokens: 2,097,152 planned, 2,097,152 by vLLM (+0.0%)" in "\n".join(check.summary_lines())


def test_the_plan_of_a_real_h100_start_is_within_the_threshold() -> None:
    check = check_log(llama_plan(), GPU_DEBUG_LOG)
    assert check.checked and check.warnings == []
    tokens = check.figure("kv_tokens")
    assert tokens.logged == 476_016 and abs(tokens.drift_pct) < KV_LIMIT_PCT
    names = {f.name for f in check.figures}
    assert {"weights_bytes", "cuda_graph_bytes", "activation_bytes", "non_torch_bytes", "gpu_memory_bytes"} <= names
    assert check.figure("gpu_memory_bytes").drift_pct == 0.0
    assert check.note == ""  # the DEBUG breakdown is there


def test_at_info_the_check_says_where_the_breakdown_is() -> None:
    check = check_log(llama_plan(), GPU_INFO_LOG)
    assert check.checked and "activation_bytes" not in {f.name for f in check.figures}
    assert "VLLM_LOGGING_LEVEL=DEBUG" in check.note


def test_tokens_off_with_the_memory_right_blames_the_kv_bytes_per_token() -> None:
    check = check_log(llama_plan(kv_bytes_per_element=1), GPU_DEBUG_LOG)  # planned FP8, vLLM ran BF16
    (warning,) = check.warnings
    assert check.figure("kv_tokens").drift_pct < -KV_LIMIT_PCT
    assert "fewer tokens than planned" in warning and "KV bytes per token is likely wrong" in warning
    assert "65,536 B" in warning and "131,0" in warning  # the plan's, and what vLLM's 58.11 GiB / 476,016 give


def test_memory_off_names_the_weights_when_they_are_off() -> None:
    check = check_log(llama_plan(weights_gib=29.98), GPU_DEBUG_LOG)  # planned FP32 weights, vLLM loaded BF16
    (warning,) = check.warnings
    assert "more tokens than planned" in warning
    assert "likely the weights" in warning and "14.99 GiB away from the plan's" in warning


def test_memory_off_at_info_points_at_the_unlogged_terms() -> None:
    check = check_log(llama_plan(utilization=0.85), GPU_INFO_LOG)
    (warning,) = check.warnings
    assert "not logged at INFO" in warning and "VLLM_LOGGING_LEVEL=DEBUG" in warning


def test_memory_off_at_debug_points_at_the_budget() -> None:
    check = check_log(llama_plan(utilization=0.85), GPU_DEBUG_LOG)
    (warning,) = check.warnings
    assert "likely the budget" in warning and "VLLM_LOGGING_LEVEL" not in warning


def test_a_cpu_kv_space_that_is_not_the_plans() -> None:
    log = CPU_LOG.replace("(1.0/23.59)", "(2.0/23.59)").replace("2,097,152 tokens", "4,194,304 tokens")
    (warning,) = check_log(make_plan(PlanRequest(rehearsal=True)), log).warnings
    assert "100.0% more tokens" in warning and "VLLM_CPU_KVCACHE_SPACE" in warning


def test_a_server_started_for_another_plan_is_not_compared() -> None:
    check = check_log(llama_plan(max_model_len=8192), GPU_DEBUG_LOG)
    assert not check.checked and check.figures == []
    assert "max_model_len 16,384" in check.warnings[0] and "another plan" in check.warnings[0]


def test_no_startup_lines_no_check() -> None:
    check = check_log(llama_plan(), "INFO:     Application startup complete.")
    assert not check.checked and check.warnings == [] and "not in its log" in check.note
    assert check.summary_lines() == [f"plan vs vLLM: not checked: {check.note}"]


def test_markdown_puts_the_figures_side_by_side() -> None:
    text = check_log(llama_plan(kv_bytes_per_element=1), GPU_DEBUG_LOG).markdown()
    assert "| figure | plan | vLLM | drift |" in text
    assert "| KV cache memory |" in text and "## Warnings" in text


def test_a_tail_that_lost_the_token_line_still_checks_the_memory() -> None:
    log = "\n".join(line for line in GPU_INFO_LOG.splitlines() if "KV cache size" not in line)
    check = check_log(llama_plan(weights_gib=29.98), log)
    assert check.checked and check.figure("kv_tokens") is None
    (warning,) = check.warnings
    assert "KV cache memory is +34.9% off" in warning and "likely the weights" in warning
