"""The planner's input (PlanRequest) and output (Plan). The Plan is what `plan --json` prints
(with `vllm.args` added), what `render` writes into the manifest, and what `up` launches: keep
field names stable, and bump `schema_version` when they change."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from r4b_deploy.hardware.inventory import GPU

# The least share of a GPU a plan may ask for: 1% of the largest GPU holds no R-4B weights (9.6 GB
# would need a 960 GB GPU), and the arithmetic divides by it (1e-300 overflowed it).
MIN_GPU_MEMORY_UTILIZATION = 0.01
# A Hugging Face revision: a branch, tag or commit id. No spaces, quotes or shell characters (it
# lands in rendered files), no leading '-' (vLLM would read a flag), no '..'.
REVISION_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,127}"


class PlanRequest(BaseModel):
    """What the user asked for. None means "let the planner decide"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu: str | None = None  # catalog name with optional count, "L4", "A100-80GB:8"
    inventory_file: Path | None = None  # a file written by `r4b-deploy gpus --json`
    profile: str | None = None  # force a tier by name
    max_model_len: int | None = Field(default=None, gt=0)
    max_num_seqs: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float | None = Field(default=None, ge=MIN_GPU_MEMORY_UTILIZATION, le=1)
    kv_cache_dtype: Literal["auto", "fp8"] | None = None
    images_per_prompt: int | None = Field(default=None, ge=0)
    rehearsal: bool = False  # plan the CPU rehearsal (tiny model on vLLM's CPU build) instead
    # The model: None R-4B (profiles/model.yaml); a name in profiles/models, a known Hugging Face id,
    # or a folder holding config.json and safetensors weights (r4b_deploy.spec.resolve_model).
    model: str | None = Field(default=None, min_length=1)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    tensor_parallel_size: int | None = Field(default=None, gt=0)  # every tier on this many GPUs
    vllm_version: str | None = None  # one of profiles/vllm.yaml gpu.releases; None: the newest the driver runs
    # The model's Hugging Face revision (branch, tag or commit); None: the default branch.
    revision: str | None = None
    # vLLM engines on this host behind vLLM's router, each on its own GPUs (or, rehearsing, its own
    # CPU core). None: the planner decides (replicas when they serve more than tensor parallelism).
    replicas: int | None = Field(default=None, ge=1)

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, value: str | None) -> str | None:
        if value is not None and (not re.fullmatch(REVISION_PATTERN, value) or ".." in value):
            raise ValueError(
                "not a revision: a branch, tag or commit id of letters, digits and . _ - / "
                "(at most 128, not starting with . - or /, no '..')"
            )
        return value


class VllmSettings(BaseModel):
    """What `vllm serve` is told, structured: one representation for the planner's search (which
    varies the settings that move memory with `model_copy(update=...)`), the Plan and the
    manifest. The argument list is made from it at launch time by
    `r4b_deploy.launch.args.vllm_serve_args`, which also takes the host, port and names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str  # the plan's; render's --model may serve another
    served_model_name: str
    trust_remote_code: bool
    tensor_parallel_size: int = Field(gt=0)
    max_model_len: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int = Field(gt=0)
    # 0 for the CPU rehearsal: its KV cache is sized by VLLM_CPU_KVCACHE_SPACE, and the flag is left out.
    gpu_memory_utilization: float = Field(ge=0, le=1)
    dtype: Literal["bfloat16", "float16", "auto"]  # "auto" only for the CPU rehearsal
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    images_per_prompt: int = Field(ge=0)  # worst-case images per request: vLLM profiles (and reserves) for them
    multimodal: bool = True  # False: a text-only model, to which vLLM refuses --limit-mm-per-prompt
    reasoning_parser: str | None = None
    enforce_eager: bool = False  # CUDA graphs off: a reduced plan's memory relief, and the CPU rehearsal
    revision: str | None = None  # the model's Hugging Face revision (`--revision`); None: the default branch


class MemoryBreakdown(BaseModel):
    """Per GPU, in bytes, following vLLM's own accounting (see docs/planner.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_bytes: int  # the CUDA-visible total vLLM sizes against (below NVML's total)
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
    vllm_release: str | None = None  # the memory.yaml release entry the coefficients came from
    # What must be free at start-up: vLLM refuses when the budget (plus, before 0.21, the CUDA
    # graphs captured above it) exceeds the free memory left after the CUDA context.
    start_free_bytes: int | None = None
    cuda_graph_headroom_bytes: int = 0  # graphs captured above the budget (before 0.21); 0 when in it


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

    schema_version: int = 2  # 2: `vllm` holds settings only; the arguments are made at launch
    model_id: str
    # The model as messages name it ("R-4B"), its architecture, and its R-4B-style thinking modes
    # (smoke and bench send them; [] none). None: a plan written before these fields (R-4B).
    model_name: str | None = None
    model_architecture: str | None = None
    thinking_modes: list[str] | None = None
    profile: str
    profile_description: str = ""
    rehearsal: bool = False
    inventory_source: str
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    # The vLLM release the image installs: a GPU pin chosen for the driver (see `reasons`), or the
    # rehearsal's CPU build. None only in plans written before the pins became a table.
    vllm_version: str | None = None
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
    # vLLM engines this host runs, each with `vllm` on its own tensor_parallel_size GPUs (in
    # `gpu_indices` order) or, rehearsing, its own CPU core; more than one run behind vLLM's router.
    replica_count: int = Field(default=1, ge=1)

    def replica_gpu_indices(self) -> list[list[int]]:
        """The GPUs of each replica: consecutive groups of tensor_parallel_size from `gpu_indices`."""
        return gpu_groups(self.gpu_indices, self.vllm.tensor_parallel_size, self.replica_count)


def gpu_groups(gpu_indices: list[int], size: int, count: int) -> list[list[int]]:
    """`count` consecutive groups of `size` GPUs from `gpu_indices`: replica i gets the i-th."""
    return [gpu_indices[i * size : (i + 1) * size] for i in range(count)]
