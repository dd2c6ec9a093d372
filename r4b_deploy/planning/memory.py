"""The memory arithmetic, per GPU, as vLLM does it at startup (docs/planner.md):

    budget   = total x gpu_memory_utilization                      (of TOTAL, not free)
    KV cache = budget - weights - activations - vision encoder - non-torch - CUDA graphs
    KV tokens = whole 16-token blocks of (KV bytes per token) in the KV cache
    max concurrency = KV tokens / max_model_len                   (vLLM's startup log line)

Pure functions of the model spec, the settings and the coefficients in profiles/memory.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from r4b_deploy.hardware.inventory import BYTES_PER_GIB, GPU
from r4b_deploy.paths import profiles_dir
from r4b_deploy.planning.plan import MemoryBreakdown
from r4b_deploy.spec import ModelSpec

MEMORY_FILE_NAME = "memory.yaml"
KV_TENSORS_PER_LAYER = 2  # one K and one V tensor per layer


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivationCoefficients(_Strict):
    bytes_per_batched_token: int = Field(gt=0)
    sampler_bytes_per_vocab_entry: int = Field(gt=0)


class VisionCoefficients(_Strict):
    bytes_per_image_token: int = Field(gt=0)


class NonTorchCoefficients(_Strict):
    single_gpu_gib: float = Field(ge=0)
    tensor_parallel_gib: float = Field(ge=0)


class BatchingPair(_Strict):
    max_num_batched_tokens: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)


class DefaultBatching(_Strict):
    large_gpu_min_memory_gib: float = Field(gt=0)
    large_gpu_excluded_names: list[str] = []
    large: BatchingPair
    default: BatchingPair


class ReliefStep(_Strict):
    enforce_eager: bool | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)


class ReducedPlan(_Strict):
    min_max_model_len: int = Field(gt=0)
    relief_steps: list[ReliefStep] = []


class WarningThresholds(_Strict):
    high_gpu_memory_utilization: float = Field(gt=0, le=1)
    fp8_kv_native_min_compute_capability: str = Field(pattern=r"^\d+\.\d+$")


class MemoryModel(_Strict):
    """profiles/memory.yaml: the estimation coefficients (data, not literals in code)."""

    kv_block_size_tokens: int = Field(gt=0)
    activation: ActivationCoefficients
    vision_encoder: VisionCoefficients
    non_torch: NonTorchCoefficients
    cuda_graph_gib: float = Field(ge=0)
    default_batching: DefaultBatching
    reduced_plan: ReducedPlan
    warnings: WarningThresholds


def load_memory_model_file(path: Path) -> MemoryModel:
    from r4b_deploy.datafile import load_data_file

    return load_data_file(MemoryModel, path, "the memory model")


@lru_cache(maxsize=1)
def memory_model() -> MemoryModel:
    """The packaged coefficients, read once."""
    return load_memory_model_file(profiles_dir() / MEMORY_FILE_NAME)


@dataclass(frozen=True)
class ServeSettings:
    """The settings that move memory: what the planner varies and what the Plan finally carries."""

    dtype: Literal["bfloat16", "float16", "auto"]  # "auto" only for the CPU rehearsal
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    kv_cache_dtype: Literal["auto", "fp8"]
    images_per_prompt: int
    enforce_eager: bool

    def with_(self, **changes: object) -> ServeSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


def gib_to_bytes(gib: float) -> int:
    return int(gib * BYTES_PER_GIB)


def vllm_default_batching(gpu: GPU, mm: MemoryModel) -> BatchingPair:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for the OpenAI server on this GPU."""
    rule = mm.default_batching
    name = gpu.name.casefold()
    large = gpu.memory_total_bytes >= gib_to_bytes(rule.large_gpu_min_memory_gib) and not any(
        excluded.casefold() in name for excluded in rule.large_gpu_excluded_names
    )
    return rule.large if large else rule.default


def weights_bytes(spec: ModelSpec, s: ServeSettings) -> int:
    return math.ceil(spec.parameters * spec.weight_bytes_per_param[s.dtype] / s.tensor_parallel_size)


def kv_bytes_per_token(spec: ModelSpec, s: ServeSettings) -> int:
    """2 x layers x (KV heads / TP) x head_dim x bytes: 147,456 B in BF16 at TP 1."""
    lm = spec.language_model
    kv_heads_per_gpu = lm.num_key_value_heads // s.tensor_parallel_size
    return (
        KV_TENSORS_PER_LAYER
        * lm.num_hidden_layers
        * kv_heads_per_gpu
        * lm.head_dim
        * spec.kv_cache_bytes_per_element[s.kv_cache_dtype]
    )


def activation_bytes(spec: ModelSpec, s: ServeSettings, mm: MemoryModel) -> int:
    c = mm.activation
    return (
        c.bytes_per_batched_token * s.max_num_batched_tokens
        + c.sampler_bytes_per_vocab_entry * spec.language_model.vocab_size * s.max_num_seqs
    )


def vision_encoder_bytes(spec: ModelSpec, s: ServeSettings, mm: MemoryModel) -> int:
    return mm.vision_encoder.bytes_per_image_token * spec.vision.max_image_tokens * s.images_per_prompt


def non_torch_bytes(s: ServeSettings, mm: MemoryModel) -> int:
    gib = mm.non_torch.tensor_parallel_gib if s.tensor_parallel_size > 1 else mm.non_torch.single_gpu_gib
    return gib_to_bytes(gib)


def cuda_graph_bytes(s: ServeSettings, mm: MemoryModel) -> int:
    return 0 if s.enforce_eager else gib_to_bytes(mm.cuda_graph_gib)


def non_kv_bytes(spec: ModelSpec, s: ServeSettings, mm: MemoryModel) -> int:
    """Everything in the budget that is not KV cache."""
    return (
        weights_bytes(spec, s)
        + activation_bytes(spec, s, mm)
        + vision_encoder_bytes(spec, s, mm)
        + non_torch_bytes(s, mm)
        + cuda_graph_bytes(s, mm)
    )


def budget_bytes(gpu_memory_bytes: int, s: ServeSettings) -> int:
    return math.floor(gpu_memory_bytes * s.gpu_memory_utilization)


def estimate(gpu_memory_bytes: int, spec: ModelSpec, s: ServeSettings, mm: MemoryModel) -> MemoryBreakdown:
    """The per-GPU breakdown; kv_cache_bytes is negative when the rest does not even fit."""
    weights = weights_bytes(spec, s)
    activation = activation_bytes(spec, s, mm)
    vision = vision_encoder_bytes(spec, s, mm)
    non_torch = non_torch_bytes(s, mm)
    graphs = cuda_graph_bytes(s, mm)
    budget = budget_bytes(gpu_memory_bytes, s)
    kv_cache = budget - weights - activation - vision - non_torch - graphs
    per_token = kv_bytes_per_token(spec, s)
    block = mm.kv_block_size_tokens
    kv_tokens = max(0, kv_cache // (block * per_token)) * block
    return MemoryBreakdown(
        gpu_memory_bytes=gpu_memory_bytes,
        budget_bytes=budget,
        weights_bytes=weights,
        activation_bytes=activation,
        vision_encoder_bytes=vision,
        non_torch_bytes=non_torch,
        cuda_graph_bytes=graphs,
        kv_cache_bytes=kv_cache,
        kv_bytes_per_token=per_token,
        kv_tokens=kv_tokens,
        max_concurrency=round(kv_tokens / s.max_model_len, 2),
    )


def fits(memory: MemoryBreakdown, s: ServeSettings) -> bool:
    """vLLM starts only if one full max_model_len sequence fits the KV cache."""
    return memory.kv_cache_bytes > 0 and memory.kv_tokens >= s.max_model_len


def required_gpu_memory_bytes(spec: ModelSpec, s: ServeSettings, mm: MemoryModel) -> int:
    """The least total memory per GPU on which these settings hold one full max_model_len sequence."""
    block = mm.kv_block_size_tokens
    kv_needed = math.ceil(s.max_model_len / block) * block * kv_bytes_per_token(spec, s)
    total = math.ceil((non_kv_bytes(spec, s, mm) + kv_needed) / s.gpu_memory_utilization)
    # Float rounding in the budget's floor can leave a byte short: step up until it really fits.
    while not fits(estimate(total, spec, s, mm), s):
        total += 1
    return total
