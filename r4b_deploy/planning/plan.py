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


class MemoryBreakdown(BaseModel):
    """Per GPU, in bytes, following vLLM's own accounting (see README: How the planner decides)."""

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
