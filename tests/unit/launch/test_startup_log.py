"""vLLM's start-up lines parsed from real logs (tests/fixtures/vllm_logs/: how each was obtained is in its header)."""

from __future__ import annotations

from pathlib import Path

import pytest

from r4b_deploy.launch.startup_log import STARTUP_LOG_LINES, check_running, parse_startup

LOGS = Path(__file__).parents[2] / "fixtures" / "vllm_logs"
CPU_LOG = (LOGS / "cpu-0.32.0-rehearsal.log").read_text()
GPU_DEBUG_LOG = (LOGS / "gpu-0.19.0-llama-3.1-8b-h100-debug.log").read_text()
GIB = 1024**3


def gib(value: float) -> int:
    return round(value * GIB)


def info_only(text: str) -> str:
    """The same start as vLLM's default level (INFO) logs it."""
    return "\n".join(line for line in text.splitlines() if " DEBUG " not in line)


def test_the_cpu_builds_lines() -> None:
    startup = parse_startup(CPU_LOG)
    assert (startup.device, startup.vllm_version) == ("CPU", "0.32.0")
    assert startup.kv_cache_bytes == GIB  # "Explicitly set (1.0/23.59) GiB for KV cache"
    assert (startup.kv_tokens, startup.max_model_len, startup.max_concurrency) == (2_097_152, 2048, 1024.0)
    assert startup.weights_bytes is None and startup.cuda_graph_bytes is None  # the CPU build logs neither
    assert startup.found and not startup.has_breakdown


def test_a_gpu_start_at_debug() -> None:
    startup = parse_startup(GPU_DEBUG_LOG)
    assert (startup.device, startup.vllm_version) == ("GPU", "0.19.0")
    assert startup.weights_bytes == gib(14.99)
    assert startup.kv_cache_bytes == gib(58.11)
    assert (startup.kv_tokens, startup.max_model_len, startup.max_concurrency) == (476_016, 16_384, 29.05)
    assert (startup.cuda_graph_bytes, startup.cuda_graph_estimate_bytes) == (gib(0.91), gib(0.84))
    assert startup.has_breakdown
    assert (startup.activation_bytes, startup.non_torch_bytes) == (gib(1.89), gib(0.25))
    assert (startup.cuda_total_bytes, startup.start_free_bytes) == (gib(79.19), gib(78.68))


def test_the_same_start_at_info_has_no_breakdown() -> None:
    startup = parse_startup(info_only(GPU_DEBUG_LOG))
    assert not startup.has_breakdown
    assert startup.activation_bytes is None and startup.non_torch_bytes is None and startup.cuda_total_bytes is None
    assert (startup.weights_bytes, startup.kv_cache_bytes, startup.kv_tokens) == (gib(14.99), gib(58.11), 476_016)
    assert startup.cuda_graph_bytes == gib(0.91)


def test_a_restart_in_the_same_log_counts_from_the_new_engine() -> None:
    startup = parse_startup(GPU_DEBUG_LOG + "\n" + CPU_LOG)
    assert startup.vllm_version == "0.32.0" and startup.kv_tokens == 2_097_152
    assert startup.weights_bytes is None  # nothing carried over from the first start


def test_tensor_parallel_ranks_take_the_least_kv_memory() -> None:
    # Each rank logs its own "Available KV cache memory" (info_once per process); vLLM sizes by the least.
    line = next(line for line in GPU_DEBUG_LOG.splitlines() if "Available KV cache memory" in line)
    text = GPU_DEBUG_LOG.replace(line, line + "\n" + line.replace("58.11", "57.90"))
    assert parse_startup(text).kv_cache_bytes == gib(57.90)


def test_0_32_and_0_33_debug_profile_line_gives_non_torch_as_consumed_less_weights() -> None:
    # MemoryProfilingResult.__repr__ of vLLM 0.32/0.33 (utils/mem_utils.py) has no non-torch term.
    line = (
        "(EngineCore pid=243) DEBUG 12-01 09:00:00 [v1/worker/gpu_worker.py:771] Memory profiling takes 18.17 "
        "seconds. Total non KV cache memory: 17.12GiB; torch peak memory increase: 1.89GiB; total consumed "
        "(from mem_get_info): 15.24GiB; weights memory: 14.99GiB."
    )
    startup = parse_startup(info_only(GPU_DEBUG_LOG) + "\n" + line)
    assert startup.activation_bytes == gib(1.89)
    assert startup.non_torch_bytes == gib(15.24) - gib(14.99)


@pytest.mark.parametrize("text", ["", "INFO: Application startup complete.", "\x1b[32mINFO\x1b[0m nothing here"])
def test_a_log_without_the_lines(text: str) -> None:
    startup = parse_startup(text)
    assert not startup.found and startup.kv_tokens is None


def test_colour_codes_are_ignored() -> None:
    coloured = CPU_LOG.replace("CPU KV cache size", "\x1b[1;36mCPU KV cache size\x1b[0m")
    assert parse_startup(coloured).kv_tokens == 2_097_152


class _LogTail:
    """A runtime as `status` uses it here: only its log tail."""

    def __init__(self, text: str | None) -> None:
        self.text = text

    def log_tail(self, folder: Path, lines: int) -> str:
        assert lines == STARTUP_LOG_LINES
        if self.text is None:
            raise OSError("the log cannot be read")
        return self.text


def test_status_checks_the_folders_plan_against_the_runtimes_log(tmp_path: Path) -> None:
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.planning.planner import make_plan
    from r4b_deploy.render.deployment import write_deployment
    from r4b_deploy.render.options import RenderOptions

    folder = tmp_path / "deploy"
    write_deployment(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), folder, environ={})
    check = check_running(_LogTail(CPU_LOG), folder)  # type: ignore[arg-type]
    assert check is not None and check.checked and check.figure("kv_tokens").drift_pct == 0.0
    assert check_running(_LogTail(None), folder) is None  # type: ignore[arg-type]
    assert check_running(_LogTail(CPU_LOG), tmp_path / "not-a-deployment") is None  # type: ignore[arg-type]
