"""The tiers (profiles/tiers/*.yaml): what each documented hardware tier is for and the vLLM
settings it aims at. Loaded in two stages: pydantic checks each field's shape (extra="forbid"),
then `check_tier` checks what only the model spec can say (heads, context length, image tokens).
Any problem is a ConfigError naming the file, the field and the problem."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from r4b_deploy.datafile import StrictModel as _Strict
from r4b_deploy.datafile import load_data_file
from r4b_deploy.errors import ConfigError
from r4b_deploy.paths import profiles_dir
from r4b_deploy.spec import ModelSpec, model_spec

TIERS_DIR_NAME = "tiers"
REHEARSAL_TIER_NAME = "rehearsal"
_TIER_FIX = "correct the field, or restore the file from the r4b-deploy package"


class TierVllm(_Strict):
    """The vLLM settings a tier aims at; the planner keeps them when the hardware holds them."""

    max_model_len: int = Field(gt=0)
    images_per_prompt: int = Field(ge=0)
    max_num_seqs: int = Field(gt=0)
    gpu_memory_utilization: float = Field(gt=0, le=1)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)  # None: vLLM's default for the GPU
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    enforce_eager: bool = False


class TierProfile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    rank: int = Field(ge=1)
    description: str
    use_cases: list[str] = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)
    gpu_count: int = Field(ge=1)
    tensor_parallel_size: int = Field(ge=1)
    min_memory_gb_per_gpu: float = Field(gt=0)
    recommended_memory_gb_per_gpu: float = Field(gt=0)
    vllm: TierVllm


class RehearsalTier(_Strict):
    """The CPU rehearsal: the tiny model's path and the flags verified on vLLM's CPU build."""

    name: Literal["rehearsal"]
    description: str
    model: str = Field(min_length=1)
    dtype: Literal["bfloat16", "float16", "auto"]
    enforce_eager: bool
    trust_remote_code: bool
    images_per_prompt: int = Field(ge=0)
    max_num_seqs: int = Field(gt=0)


def _load(model: type[_Strict], path: Path) -> Any:
    return load_data_file(model, path, "the tier profile", fix=_TIER_FIX)


def _problem(path: Path, field: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: field {field!r}: {problem}", fix=_TIER_FIX)


def check_tier(tier: TierProfile, spec: ModelSpec, path: Path) -> None:
    """What a tier must satisfy beyond field shapes, so that no tier can yield a config vLLM refuses."""
    lm = spec.language_model
    tp = tier.tensor_parallel_size
    if tier.name != path.stem:
        raise _problem(path, "name", f"{tier.name!r} differs from the file name {path.name}")
    if tier.recommended_memory_gb_per_gpu < tier.min_memory_gb_per_gpu:
        raise _problem(
            path,
            "recommended_memory_gb_per_gpu",
            f"{tier.recommended_memory_gb_per_gpu:g} GB is below min_memory_gb_per_gpu "
            f"{tier.min_memory_gb_per_gpu:g} GB",
        )
    if lm.num_attention_heads % tp or lm.num_key_value_heads % tp:
        raise _problem(
            path,
            "tensor_parallel_size",
            f"{tp} does not divide the model's {lm.num_attention_heads} attention heads "
            f"and {lm.num_key_value_heads} KV heads",
        )
    if tier.gpu_count % tp:
        raise _problem(path, "tensor_parallel_size", f"{tp} does not divide gpu_count {tier.gpu_count}")
    v = tier.vllm
    if v.max_model_len > lm.max_position_embeddings:
        raise _problem(
            path,
            "vllm.max_model_len",
            f"{v.max_model_len} exceeds the model's max_position_embeddings {lm.max_position_embeddings}",
        )
    image_tokens = v.images_per_prompt * spec.vision.max_image_tokens
    if image_tokens >= v.max_model_len:
        raise _problem(
            path,
            "vllm.images_per_prompt",
            f"{v.images_per_prompt} worst-case images ({image_tokens} tokens) leave no room in "
            f"max_model_len {v.max_model_len}",
        )
    if v.max_num_batched_tokens is not None and v.max_num_batched_tokens < v.max_num_seqs:
        raise _problem(
            path,
            "vllm.max_num_batched_tokens",
            f"{v.max_num_batched_tokens} is below max_num_seqs {v.max_num_seqs} (vLLM refuses that)",
        )


def load_tier_file(path: Path, spec: ModelSpec | None = None) -> TierProfile:
    """One tier file, validated against the model spec."""
    tier = _load(TierProfile, path)
    check_tier(tier, spec or model_spec(), path)
    return tier


def load_tiers(directory: Path | None = None, spec: ModelSpec | None = None) -> tuple[TierProfile, ...]:
    """Every tier in `directory` (default: the packaged profiles/tiers), lowest rank first."""
    if directory is None:
        return _packaged_tiers()
    return _load_tiers(directory, spec or model_spec())


@lru_cache(maxsize=1)
def _packaged_tiers() -> tuple[TierProfile, ...]:
    return _load_tiers(profiles_dir() / TIERS_DIR_NAME, model_spec())


def _load_tiers(directory: Path, spec: ModelSpec) -> tuple[TierProfile, ...]:
    files = sorted(p for p in directory.glob("*.yaml") if p.stem != REHEARSAL_TIER_NAME)
    if not files:
        raise ConfigError(f"{directory}: no tier files (*.yaml)", fix=_TIER_FIX)
    tiers: list[TierProfile] = []
    seen_rank: dict[int, Path] = {}
    for path in files:
        tier = load_tier_file(path, spec)
        if tier.rank in seen_rank:
            raise _problem(path, "rank", f"{tier.rank} is also the rank of {seen_rank[tier.rank].name}")
        seen_rank[tier.rank] = path
        tiers.append(tier)
    return tuple(sorted(tiers, key=lambda t: t.rank))


def load_rehearsal_tier(directory: Path | None = None) -> RehearsalTier:
    """profiles/tiers/rehearsal.yaml."""
    path = (directory or profiles_dir() / TIERS_DIR_NAME) / f"{REHEARSAL_TIER_NAME}.yaml"
    return _load(RehearsalTier, path)
