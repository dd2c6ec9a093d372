"""profiles/memory.yaml as data: the coefficients of the memory arithmetic (`planning/memory.py`),
one entry per vLLM release line whose profiling behaves differently, and the planner's thresholds.

Parsed only, here; the arithmetic that uses them is `memory.py`'s."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from r4b_deploy.datafile import StrictModel as _Strict
from r4b_deploy.datafile import load_data_file
from r4b_deploy.paths import profiles_dir
from r4b_deploy.pins import gpu_pins, version_tuple

MEMORY_FILE_NAME = "memory.yaml"


class ReleaseCoefficients(_Strict):
    """One vLLM release line's profiling behaviour (sources in profiles/memory.yaml)."""

    forward_bytes_per_batched_token: int = Field(gt=0)
    sampler_bytes_per_vocab_entry: int = Field(gt=0)
    sampler_base_gib: float = Field(ge=0)
    encoder_bytes_per_image_token: int = Field(gt=0)
    non_torch_single_gpu_gib: float = Field(ge=0)
    non_torch_tensor_parallel_gib: float = Field(ge=0)
    cuda_graph_gib: float = Field(ge=0)
    cuda_graphs_in_budget: bool


class BatchingPair(_Strict):
    max_num_batched_tokens: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)


class DefaultBatching(_Strict):
    large_gpu_min_memory_gib: float = Field(gt=0)
    large_gpu_excluded_names: list[str] = Field(default_factory=list)
    large: BatchingPair
    default: BatchingPair


class ReliefStep(_Strict):
    enforce_eager: bool | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)


class ReducedPlan(_Strict):
    min_max_model_len: int = Field(gt=0)
    relief_steps: list[ReliefStep] = Field(default_factory=list)


class WarningThresholds(_Strict):
    high_gpu_memory_utilization: float = Field(gt=0, le=1)
    fp8_kv_native_min_compute_capability: str = Field(pattern=r"^\d+\.\d+$")


class PlanCheckThresholds(_Strict):
    """How far vLLM's logged figures may drift from the plan's before `up` and `status` warn."""

    kv_drift_pct: float = Field(gt=0)
    weights_drift_pct: float = Field(gt=0)


class MemoryModel(_Strict):
    """profiles/memory.yaml: the estimation coefficients (data, not literals in code)."""

    kv_block_size_tokens: int = Field(gt=0)
    cuda_context_gib: float = Field(ge=0)
    cuda_context_tensor_parallel_gib: float = Field(ge=0)
    cuda_total_margin_gib: float = Field(ge=0)
    releases: dict[str, ReleaseCoefficients] = Field(min_length=1)
    default_batching: DefaultBatching
    reduced_plan: ReducedPlan
    plan_check: PlanCheckThresholds
    warnings: WarningThresholds

    def release_key(self, vllm_version: str) -> str:
        """The newest entry at or below `vllm_version` ("0.33.1" -> "0.21.0"); older than all: the oldest."""
        wanted = version_tuple(vllm_version)
        keys = sorted(self.releases, key=version_tuple)
        at_or_below = [k for k in keys if version_tuple(k) <= wanted]
        return at_or_below[-1] if at_or_below else keys[0]

    def release(self, vllm_version: str | None = None) -> ReleaseCoefficients:
        return self.releases[self.release_key(vllm_version or default_vllm_version())]


def default_vllm_version() -> str:
    """The vLLM the toolkit installs on GPU hosts (profiles/vllm.yaml), until a plan names its own."""
    return gpu_pins().vllm_version


def load_memory_model_file(path: Path) -> MemoryModel:
    return load_data_file(MemoryModel, path, "the memory model")


@lru_cache(maxsize=1)
def memory_model() -> MemoryModel:
    """The packaged coefficients, read once."""
    return load_memory_model_file(profiles_dir() / MEMORY_FILE_NAME)
