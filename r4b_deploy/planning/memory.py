"""The memory arithmetic, per GPU, as vLLM sizes its KV cache at start-up (docs/planner.md):

    budget    = CUDA-visible total x gpu_memory_utilization      (vLLM refuses if that much isn't free)
    peak      = max(forward pass, sampler warm-up) + what the encoder's one image adds
    KV cache  = budget - weights - peak - non-torch [- CUDA graphs from vLLM 0.21 on]
    KV tokens = whole 16-token blocks of (KV bytes per token) in the KV cache

`breakdown` is the pure core: any model's numbers (`ModelNumbers`), one GPU's memory
(`DeviceMemory`), the settings and one release's coefficients (profiles/memory.yaml, read by
`planning/coefficients.py`). The
calibration tests feed it other models' numbers from real vLLM logs; `estimate` feeds it R-4B's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r4b_deploy.hardware.inventory import BYTES_PER_GIB, GPU
from r4b_deploy.planning.coefficients import (
    BatchingPair,
    MemoryModel,
    ReleaseCoefficients,
    default_vllm_version,
)
from r4b_deploy.planning.plan import MemoryBreakdown, VllmSettings
from r4b_deploy.spec import ModelSpec

KV_TENSORS_PER_LAYER = 2  # one K and one V tensor per layer
# How far a measured GPU's NVML total may sit from its catalog entry's and still be that card
# (a T4: 15,360 MiB on recent drivers, 15,109 on older ones).
SAME_CARD_DRIFT_BYTES = 256 * 1024**2
_ROUNDING_STEPS = 4096  # bytes required_gpu_memory_bytes steps up past its closed-form answer


def gib_to_bytes(gib: float) -> int:
    return int(gib * BYTES_PER_GIB)


# ------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class ModelNumbers:
    """What the arithmetic needs of a model: R-4B's from its spec, any other's from its config."""

    num_hidden_layers: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    hidden_size: int
    weights_bytes: int  # the whole model in the served dtype, before tensor parallelism
    kv_bytes_per_element: int  # 2 for bf16/fp16 KV, 1 for fp8
    profiled_image_tokens: int = 0  # the one worst-case image vLLM profiles; 0 for text-only models
    activation_bytes_per_element: int = 2  # encoder outputs are kept in the model dtype


@dataclass(frozen=True)
class DeviceMemory:
    """One GPU's memory as vLLM sees it: CUDA's total, and NVML's free memory when measured."""

    cuda_total_bytes: int
    free_bytes: int | None = None  # NVML's free memory of a measured GPU; None: idle


def model_numbers(spec: ModelSpec, settings: VllmSettings) -> ModelNumbers:
    lm = spec.language_model
    return ModelNumbers(
        num_hidden_layers=lm.num_hidden_layers,
        num_key_value_heads=lm.num_key_value_heads,
        head_dim=lm.head_dim,
        vocab_size=lm.vocab_size,
        # The encoder's output per image token: the LM's width (Qwen3-VL's deepstack levels widen it).
        hidden_size=lm.hidden_size * (spec.vision.output_width_factor if spec.vision else 1),
        weights_bytes=spec.parameters * spec.weight_bytes_per_param[settings.dtype],
        kv_bytes_per_element=spec.kv_cache_bytes_per_element[settings.kv_cache_dtype],
        profiled_image_tokens=spec.vision.profiled_image_tokens if spec.vision and settings.images_per_prompt else 0,
        activation_bytes_per_element=spec.weight_bytes_per_param[settings.dtype],
    )


def device_memory(gpu: GPU | int, coefficients: MemoryModel) -> DeviceMemory:
    """A GPU (or a bare NVML total) -> CUDA's total: the catalog's measured figure, else NVML's less
    the stated margin. A measured GPU's NVML free memory comes along as the start-up limit."""
    if isinstance(gpu, int):
        return DeviceMemory(cuda_total_bytes=gpu - gib_to_bytes(coefficients.cuda_total_margin_gib))
    from r4b_deploy.hardware.catalog import match_catalog

    entry = match_catalog(gpu.name)
    cuda_total = gpu.memory_total_bytes - gib_to_bytes(coefficients.cuda_total_margin_gib)
    if entry is not None and entry.cuda_total_bytes is not None:
        # The same card: NVML's figure moves by a few MiB between drivers and with ECC; CUDA's with it.
        drift = gpu.memory_total_bytes - entry.memory_total_bytes
        if abs(drift) <= SAME_CARD_DRIFT_BYTES:
            cuda_total = entry.cuda_total_bytes + drift
    return DeviceMemory(cuda_total_bytes=cuda_total, free_bytes=gpu.memory_free_bytes)


# ------------------------------------------------------------------------------ the terms


def vllm_default_batching(gpu: GPU, coefficients: MemoryModel) -> BatchingPair:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for the OpenAI server on this GPU."""
    rule = coefficients.default_batching
    name = gpu.name.casefold()
    large = gpu.memory_total_bytes >= gib_to_bytes(rule.large_gpu_min_memory_gib) and not any(
        excluded.casefold() in name for excluded in rule.large_gpu_excluded_names
    )
    return rule.large if large else rule.default


def weights_bytes(spec: ModelSpec, settings: VllmSettings) -> int:
    return _weights_per_gpu(model_numbers(spec, settings), settings)


def _weights_per_gpu(numbers: ModelNumbers, settings: VllmSettings) -> int:
    """Tensor parallelism splits the weights evenly; a rank rounds its share up."""
    return math.ceil(numbers.weights_bytes / settings.tensor_parallel_size)


def kv_bytes_per_token(spec: ModelSpec, settings: VllmSettings) -> int:
    """2 x layers x (KV heads / TP) x head_dim x bytes: 147,456 B in BF16 at TP 1."""
    return _kv_bytes_per_token(model_numbers(spec, settings), settings)


def _kv_bytes_per_token(numbers: ModelNumbers, settings: VllmSettings) -> int:
    kv_heads_per_gpu = max(1, numbers.num_key_value_heads // settings.tensor_parallel_size)
    return (
        KV_TENSORS_PER_LAYER
        * numbers.num_hidden_layers
        * kv_heads_per_gpu
        * numbers.head_dim
        * numbers.kv_bytes_per_element
    )


def lm_peak_bytes(numbers: ModelNumbers, settings: VllmSettings, release: ReleaseCoefficients) -> int:
    """The profiling run's torch peak: the forward pass over max_num_batched_tokens, then (its
    activations freed) the sampler over max_num_seqs x vocabulary: the larger of the two."""
    forward = release.forward_bytes_per_batched_token * settings.max_num_batched_tokens
    sequences = min(settings.max_num_seqs, settings.max_num_batched_tokens)
    sampler = release.sampler_bytes_per_vocab_entry * numbers.vocab_size * sequences + gib_to_bytes(
        release.sampler_base_gib
    )
    return max(forward, sampler)


def encoder_extra_bytes(numbers: ModelNumbers, lm_peak: int, release: ReleaseCoefficients) -> int:
    """What the vision encoder adds to the peak. vLLM profiles ONE image of the largest size (the
    encoder budget holds one; `--limit-mm-per-prompt` does not matter) and keeps its output cached
    through the LM's dummy run: peak = max(encoder transient, LM peak + encoder output)."""
    tokens = numbers.profiled_image_tokens
    if tokens == 0:
        return 0
    transient = release.encoder_bytes_per_image_token * tokens
    output = tokens * numbers.hidden_size * numbers.activation_bytes_per_element
    return max(transient, lm_peak + output) - lm_peak


def activation_bytes(spec: ModelSpec, settings: VllmSettings, coefficients: MemoryModel) -> int:
    return lm_peak_bytes(model_numbers(spec, settings), settings, coefficients.release())


def vision_encoder_bytes(spec: ModelSpec, settings: VllmSettings, coefficients: MemoryModel) -> int:
    numbers = model_numbers(spec, settings)
    release = coefficients.release()
    return encoder_extra_bytes(numbers, lm_peak_bytes(numbers, settings, release), release)


def non_torch_bytes(settings: VllmSettings, release: ReleaseCoefficients) -> int:
    tp = settings.tensor_parallel_size > 1
    return gib_to_bytes(release.non_torch_tensor_parallel_gib if tp else release.non_torch_single_gpu_gib)


def cuda_graph_bytes(settings: VllmSettings, release: ReleaseCoefficients) -> int:
    """The captured graphs' pool, wherever it is charged; 0 with --enforce-eager."""
    return 0 if settings.enforce_eager else gib_to_bytes(release.cuda_graph_gib)


def cuda_context_bytes(settings: VllmSettings, coefficients: MemoryModel) -> int:
    """What is in use before vLLM's free-memory snapshot: CUDA context, and NCCL with TP."""
    tp = settings.tensor_parallel_size > 1
    return gib_to_bytes(coefficients.cuda_context_tensor_parallel_gib if tp else coefficients.cuda_context_gib)


def budget_bytes(total_bytes: int, settings: VllmSettings) -> int:
    """vLLM's request_memory: ceil(total x utilization), total being CUDA's (NVML's is a bound above)."""
    return math.ceil(total_bytes * settings.gpu_memory_utilization)


# ------------------------------------------------------------------------------ the breakdown


def breakdown(
    numbers: ModelNumbers,
    device: DeviceMemory,
    settings: VllmSettings,
    release: ReleaseCoefficients,
    coefficients: MemoryModel,
    release_key: str | None = None,
) -> MemoryBreakdown:
    """The per-GPU breakdown, pure; kv_cache_bytes is negative when the rest does not even fit."""
    weights = _weights_per_gpu(numbers, settings)
    peak = lm_peak_bytes(numbers, settings, release)
    vision = encoder_extra_bytes(numbers, peak, release)
    non_torch = non_torch_bytes(settings, release)
    graphs = cuda_graph_bytes(settings, release)
    graphs_in_budget = graphs if release.cuda_graphs_in_budget else 0
    budget = budget_bytes(device.cuda_total_bytes, settings)
    kv_cache = budget - weights - peak - vision - non_torch - graphs_in_budget
    per_token = _kv_bytes_per_token(numbers, settings)
    block = coefficients.kv_block_size_tokens
    kv_tokens = max(0, kv_cache // (block * per_token)) * block
    visible = device.cuda_total_bytes if device.free_bytes is None else min(device.cuda_total_bytes, device.free_bytes)
    return MemoryBreakdown(
        gpu_memory_bytes=device.cuda_total_bytes,
        budget_bytes=budget,
        weights_bytes=weights,
        activation_bytes=peak,
        vision_encoder_bytes=vision,
        non_torch_bytes=non_torch,
        cuda_graph_bytes=graphs_in_budget,
        kv_cache_bytes=kv_cache,
        kv_bytes_per_token=per_token,
        kv_tokens=kv_tokens,
        max_concurrency=round(kv_tokens / settings.max_model_len, 2),
        vllm_release=release_key,
        start_free_bytes=visible - cuda_context_bytes(settings, coefficients),
        cuda_graph_headroom_bytes=graphs - graphs_in_budget,
    )


def estimate(
    gpu: GPU | int,
    spec: ModelSpec,
    settings: VllmSettings,
    coefficients: MemoryModel,
    vllm_version: str | None = None,
) -> MemoryBreakdown:
    """R-4B on one GPU (or a bare NVML total in bytes) under the release `vllm_version` (None: the pin)."""
    key = coefficients.release_key(vllm_version or default_vllm_version())
    return breakdown(
        model_numbers(spec, settings),
        device_memory(gpu, coefficients),
        settings,
        coefficients.releases[key],
        coefficients,
        release_key=key,
    )


def starts(memory: MemoryBreakdown) -> bool:
    """vLLM's start-up check: the budget, and graphs captured above it, fit the free memory."""
    if memory.start_free_bytes is None:
        return True
    return memory.budget_bytes + memory.cuda_graph_headroom_bytes <= memory.start_free_bytes


def free_needed_bytes(memory: MemoryBreakdown, settings: VllmSettings, coefficients: MemoryModel) -> int:
    """The NVML free memory `starts` asks of a GPU: the CUDA context (and NCCL with TP) taken before
    vLLM's snapshot, then the budget and any graphs captured above it."""
    return memory.budget_bytes + memory.cuda_graph_headroom_bytes + cuda_context_bytes(settings, coefficients)


def fits(memory: MemoryBreakdown, settings: VllmSettings) -> bool:
    """vLLM starts only if the budget is free and one full max_model_len sequence fits the KV cache."""
    return starts(memory) and memory.kv_cache_bytes > 0 and memory.kv_tokens >= settings.max_model_len


def required_gpu_memory_bytes(
    spec: ModelSpec, settings: VllmSettings, coefficients: MemoryModel, vllm_version: str | None = None
) -> int:
    """The least NVML total per GPU on which these settings hold one full max_model_len sequence."""
    block = coefficients.kv_block_size_tokens
    kv_needed = math.ceil(settings.max_model_len / block) * block * kv_bytes_per_token(spec, settings)
    margin = gib_to_bytes(coefficients.cuda_total_margin_gib)
    probe = estimate(margin + 1, spec, settings, coefficients, vllm_version)  # the non-KV terms don't scale
    utilization = settings.gpu_memory_utilization
    cuda_total = math.ceil((probe.budget_bytes - probe.kv_cache_bytes + kv_needed) / utilization)
    if utilization < 1:  # 1 never starts: the search below gives up at its bound
        above_budget = probe.cuda_graph_headroom_bytes + cuda_context_bytes(settings, coefficients)
        cuda_total = max(cuda_total, math.ceil(above_budget / (1 - utilization)))
    total = cuda_total + margin
    # Float rounding in the budget's ceil can leave a byte short: step up until it really fits.
    for _ in range(_ROUNDING_STEPS):
        if fits(estimate(total, spec, settings, coefficients, vllm_version), settings):
            break
        total += 1
    return total


def min_max_model_len(spec: ModelSpec, coefficients: MemoryModel, images_per_prompt: int | None) -> int:
    """The least context a request can use: one KV block (vLLM allocates in blocks) for text, and
    with images (None: the tier's, and every tier takes some) one one-tile image's prompt as well."""
    block = coefficients.kv_block_size_tokens
    if images_per_prompt == 0 or spec.vision is None:
        return block
    return spec.vision.one_tile_image_tokens + block


def cpu_breakdown(
    numbers: ModelNumbers, kv_space_bytes: int, settings: VllmSettings, block_tokens: int
) -> MemoryBreakdown:
    """vLLM's CPU build: the KV cache is exactly VLLM_CPU_KVCACHE_SPACE (cpu_worker.py,
    determine_available_memory: no budget, no profiling), in whole blocks of the CPU block size.
    KV tokens as vLLM 0.32 reports them: full-length requests that fit x max_model_len."""
    per_token = _kv_bytes_per_token(numbers, settings)
    blocks = kv_space_bytes // (block_tokens * per_token)
    concurrency = blocks / math.ceil(settings.max_model_len / block_tokens)
    return MemoryBreakdown(
        gpu_memory_bytes=0,
        budget_bytes=0,
        weights_bytes=0,
        activation_bytes=0,
        vision_encoder_bytes=0,
        non_torch_bytes=0,
        cuda_graph_bytes=0,
        kv_cache_bytes=kv_space_bytes,
        kv_bytes_per_token=per_token,
        kv_tokens=int(concurrency * settings.max_model_len),
        max_concurrency=round(concurrency, 2),
    )
