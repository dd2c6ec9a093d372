"""The planner's input (PlanRequest) and output (Plan). The Plan is what `plan --json` prints,
what `render` writes into the manifest, and what `up` launches: keep field names stable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from r4b_deploy.hardware.inventory import GPU


class PlanRequest(BaseModel):
    """What the user asked for. None means "let the planner decide"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu: str | None = None  # catalog name with optional count, "L4", "A100-80GB:8"
    inventory_file: Path | None = None  # a file written by `r4b-deploy gpus --json`
    profile: str | None = None  # force a tier by name
    max_model_len: int | None = Field(default=None, gt=0)
    max_num_seqs: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    kv_cache_dtype: Literal["auto", "fp8"] | None = None
    images_per_prompt: int | None = Field(default=None, ge=0)
    rehearsal: bool = False  # plan the CPU rehearsal (tiny model on vLLM's CPU build) instead


class VllmSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    args: list[str]  # the exact argument list after `vllm serve`
    model: str
    served_model_name: str
    tensor_parallel_size: int
    data_parallel_size: int = 1
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    dtype: Literal["bfloat16", "float16", "auto"]
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    limit_mm_per_prompt: dict[str, int]
    reasoning_parser: str | None = None
    port: int = 8000  # the port vLLM listens on inside its container or process
    enforce_eager: bool = False  # CUDA graphs off: a reduced plan's memory relief, and the CPU rehearsal


class MemoryBreakdown(BaseModel):
    """Per GPU, in bytes, following vLLM's own accounting (see docs/planner.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_bytes: int
    budget_bytes: int  # gpu_memory_bytes x gpu_memory_utilization
    weights_bytes: int
    activation_bytes: int
    vision_encoder_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_token: int
    kv_tokens: int
    max_concurrency: float  # kv_tokens / max_model_len, as vLLM's startup log reports it


class TierFit(BaseModel):
    """One tier as the planner judged it on this hardware: the table `plan` prints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    rank: int
    gpu_count: int
    min_memory_gb_per_gpu: float
    recommended_memory_gb_per_gpu: float
    meets_minimum: bool  # enough GPUs, each at least the documented minimum memory
    fits: bool  # the memory arithmetic holds one full sequence of the tier's own max_model_len
    chosen: bool = False
    max_model_len: int  # the tier's target (with the user's overrides)
    kv_tokens: int  # what the KV cache would hold per replica; 0 when the GPUs are too few
    max_concurrency: float
    note: str


class ReplicaAdvice(BaseModel):
    """Several GPUs: would independent single-GPU replicas serve more than this plan?"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpus_available: int
    gpus_used: int  # by this plan (its tensor-parallel size)
    replica_profile: str  # the single-GPU tier one replica would run
    replicas: int
    replica_max_model_len: int
    replica_kv_tokens: int
    replica_max_num_seqs: int
    replicas_total_kv_tokens: int
    replicas_total_concurrency: float  # full-length sequences all replicas' KV caches hold together
    replicas_total_seq_slots: int  # sum of max_num_seqs
    plan_kv_tokens: int
    plan_concurrency: float
    plan_seq_slots: int
    prefer_replicas: bool
    summary: str


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    model_id: str
    profile: str
    profile_description: str = ""
    rehearsal: bool = False
    inventory_source: str
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: list[GPU]
    vllm: VllmSettings
    memory: MemoryBreakdown
    reasons: list[str] = []
    warnings: list[str] = []
    upgrades: list[str] = []  # what more memory (or another tier) would buy
    reduced: bool = False  # below the tier's documented minimum, or its settings shrunk to fit (see warnings)
    gpu_indices: list[int] = []  # the GPUs this deployment uses (`gpus` lists the whole inventory)
    tiers: list[TierFit] = []  # every tier as judged on this hardware, the chosen one marked
    replicas: ReplicaAdvice | None = None  # only with more GPUs than the plan uses or tensor parallelism
