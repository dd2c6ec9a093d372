"""The planner's search: each tier's settings with the user's overrides, checked by the memory
arithmetic on the GPU the plan is made for; the highest tier that holds, else the lowest that
serves with its context shrunk and memory relieved step by step (a "reduced" plan).

Nothing here raises for settings that do not fit: the search answers None and `refusals` says
why. The settings are the Plan's own `VllmSettings`; each step is a `model_copy(update=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import BYTES_PER_GB, GPU, Inventory, compute_capability_tuple
from r4b_deploy.planning import memory as arithmetic
from r4b_deploy.planning.coefficients import MemoryModel, ReliefStep
from r4b_deploy.planning.plan import MemoryBreakdown, PlanRequest, VllmSettings
from r4b_deploy.planning.profiles import TierProfile
from r4b_deploy.planning.text import gb_text
from r4b_deploy.spec import ModelSpec

# The command-line flag of each overridable setting: messages speak the user's language.
OPTION_FLAGS = {
    "max_model_len": "--max-model-len",
    "max_num_seqs": "--max-num-seqs",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_dtype": "--kv-cache-dtype",
    "images_per_prompt": "--images-per-prompt",
    "max_num_batched_tokens": "--max-num-batched-tokens",
}


@dataclass(frozen=True)
class Overrides:
    """The user's command-line values (None: the tier decides)."""

    max_model_len: int | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_dtype: Literal["auto", "fp8"] | None = None
    images_per_prompt: int | None = None
    max_num_batched_tokens: int | None = None

    @classmethod
    def from_request(cls, req: PlanRequest) -> Overrides:
        return cls(**{f.name: getattr(req, f.name) for f in fields(cls)})

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def flags(self) -> str:
        return " ".join(f"{OPTION_FLAGS[name]} {getattr(self, name)}" for name in self.given())


@dataclass(frozen=True)
class Hardware:
    """The inventory as the planner sees it: GPUs by index, the one it plans for, the dtype."""

    inventory: Inventory
    gpus: tuple[GPU, ...]  # by index
    weakest: GPU  # the plan is made for this one: least memory, then lowest compute capability
    dtype: Literal["bfloat16", "float16"]

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def mixed(self) -> bool:
        return not self.inventory.homogeneous

    @property
    def lowest_compute_capability(self) -> tuple[int, int]:
        """What the GPUs can all do: bf16 and native FP8 need every one of them to have it."""
        return min(g.compute_capability_tuple for g in self.gpus)

    def label(self) -> str:
        if self.mixed:
            names = ", ".join(f"{g.name} ({gb_text(g.memory_total_bytes)})" for g in self.gpus)
            return f"{self.count} mixed GPUs: {names}"
        each = " each" if self.count > 1 else ""
        gpu = self.weakest
        return f"{self.count}× {gpu.name} ({gb_text(gpu.memory_total_bytes)}{each}, compute {gpu.compute_capability})"

    def meets_minimum(self, tier: TierProfile) -> bool:
        return (
            self.count >= tier.gpu_count
            and self.weakest.memory_total_bytes >= tier.min_memory_gb_per_gpu * BYTES_PER_GB
        )


def planned_hardware(inventory: Inventory, spec: ModelSpec) -> Hardware:
    if not inventory.gpus:
        raise UsageError(
            "the inventory lists no GPU",
            fix="plan for a named GPU with --gpu NAME[:COUNT], or rehearse on a CPU with --rehearsal",
        )
    gpus = tuple(sorted(inventory.gpus, key=lambda g: g.index))
    weakest = min(gpus, key=lambda g: (g.memory_total_bytes, g.compute_capability_tuple))
    lowest_capability = min(g.compute_capability_tuple for g in gpus)
    bf16_capability = compute_capability_tuple(spec.min_compute_capability_bf16)
    dtype: Literal["bfloat16", "float16"] = "bfloat16" if lowest_capability >= bf16_capability else "float16"
    return Hardware(inventory=inventory, gpus=gpus, weakest=weakest, dtype=dtype)


@dataclass(frozen=True)
class Candidate:
    """One tier's settings and what they leave for the KV cache on the planned-for GPU."""

    tier: TierProfile
    settings: VllmSettings
    memory: MemoryBreakdown
    relief: ReliefStep | None = None

    @property
    def fits(self) -> bool:
        return arithmetic.fits(self.memory, self.settings)


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    reduced: bool  # settings differ from the tier's, or the GPUs are below its documented minimum
    forced: bool = False


@dataclass(frozen=True)
class Context:
    """What one planning run reads; only the overrides vary (refusals try other values)."""

    spec: ModelSpec
    memory_model: MemoryModel  # the coefficients of profiles/memory.yaml
    tiers: tuple[TierProfile, ...]
    hardware: Hardware
    overrides: Overrides
    vllm_version: str | None = None  # the release the image installs (its memory coefficients); None: the pin

    def without_overrides(self) -> Context:
        return replace(self, overrides=Overrides())

    def with_override(self, name: str, value: object) -> Context:
        return replace(self, overrides=replace(self.overrides, **{name: value}))


# ------------------------------------------------------------------------------ the arithmetic


def tier_settings(ctx: Context, tier: TierProfile, overrides: Overrides) -> VllmSettings:
    """The tier's targets with the user's overrides on top; vLLM's batching default filled in."""
    targets = tier.vllm
    max_num_seqs = overrides.max_num_seqs if overrides.max_num_seqs is not None else targets.max_num_seqs
    batched = (
        overrides.max_num_batched_tokens
        or targets.max_num_batched_tokens
        or arithmetic.vllm_default_batching(ctx.hardware.weakest, ctx.memory_model).max_num_batched_tokens
    )
    if overrides.max_num_batched_tokens is not None and overrides.max_num_seqs is None:
        # The user's token budget stands; the tier's sequence count yields (vLLM refuses more sequences than tokens).
        max_num_seqs = min(max_num_seqs, batched)
    spec = ctx.spec
    return VllmSettings(
        model=spec.model_id,
        served_model_name=spec.served_model_name,
        trust_remote_code=spec.trust_remote_code,
        dtype=ctx.hardware.dtype,
        tensor_parallel_size=tier.tensor_parallel_size,
        max_model_len=overrides.max_model_len if overrides.max_model_len is not None else targets.max_model_len,
        max_num_seqs=max_num_seqs,
        # vLLM refuses max_num_batched_tokens < max_num_seqs.
        max_num_batched_tokens=max(batched, max_num_seqs),
        gpu_memory_utilization=(
            overrides.gpu_memory_utilization
            if overrides.gpu_memory_utilization is not None
            else targets.gpu_memory_utilization
        ),
        kv_cache_dtype=overrides.kv_cache_dtype if overrides.kv_cache_dtype is not None else targets.kv_cache_dtype,
        images_per_prompt=(
            overrides.images_per_prompt if overrides.images_per_prompt is not None else targets.images_per_prompt
        ),
        multimodal=spec.vision is not None,
        reasoning_parser=spec.reasoning_parser,
        enforce_eager=targets.enforce_eager,
    )


def _relieved(settings: VllmSettings, relief: ReliefStep | None, overrides: Overrides) -> VllmSettings:
    """A relief step frees memory; it never changes a value the user set."""
    if relief is None:
        return settings
    if relief.enforce_eager:
        settings = settings.model_copy(update={"enforce_eager": True})
    if (
        relief.gpu_memory_utilization is not None
        and overrides.gpu_memory_utilization is None
        and relief.gpu_memory_utilization > settings.gpu_memory_utilization
    ):
        settings = settings.model_copy(update={"gpu_memory_utilization": relief.gpu_memory_utilization})
    return settings


def candidate(
    ctx: Context,
    tier: TierProfile,
    overrides: Overrides,
    relief: ReliefStep | None = None,
    max_model_len: int | None = None,
    gpu: GPU | None = None,
) -> Candidate:
    """`tier` with `overrides`, `relief` and `max_model_len` applied, on `gpu` (default: the weakest)."""
    settings = _relieved(tier_settings(ctx, tier, overrides), relief, overrides)
    if max_model_len is not None:
        settings = settings.model_copy(update={"max_model_len": max_model_len})
    # The GPU itself: its CUDA-visible total comes from the catalog, a measured one's free memory along.
    memory = arithmetic.estimate(gpu or ctx.hardware.weakest, ctx.spec, settings, ctx.memory_model, ctx.vllm_version)
    return Candidate(tier=tier, settings=settings, memory=memory, relief=relief)


def _shrink_steps(target: int, floor: int) -> list[int]:
    """The tier's max_model_len, then the powers of two below it down to the floor."""
    steps = [target]
    power = 1 << (target.bit_length() - 1)
    if power == target:
        power >>= 1
    while power >= floor:
        steps.append(power)
        power >>= 1
    return steps


def _ladder(ctx: Context, tier: TierProfile, relieve: bool) -> Candidate | None:
    """The largest context that fits (unless the user fixed it), trying the memory reliefs at each
    length in order when `relieve` (hardware below every documented minimum)."""
    if ctx.hardware.count < tier.gpu_count:
        return None
    reduced_plan = ctx.memory_model.reduced_plan
    target = tier_settings(ctx, tier, ctx.overrides).max_model_len
    lengths = (
        [target] if ctx.overrides.max_model_len is not None else _shrink_steps(target, reduced_plan.min_max_model_len)
    )
    reliefs: list[ReliefStep | None] = [None, *(reduced_plan.relief_steps if relieve else [])]
    for length in lengths:
        tried: set[VllmSettings] = set()
        for relief in reliefs:
            option = candidate(ctx, tier, ctx.overrides, relief, max_model_len=length)
            if option.settings in tried:
                continue
            tried.add(option.settings)
            if option.fits:
                return option
    return None


def best_choice(ctx: Context, tiers: tuple[TierProfile, ...] | None = None) -> Choice | None:
    """The highest tier the hardware holds; else the lowest that serves reduced; else None."""
    tiers = tiers if tiers is not None else ctx.tiers
    for tier in sorted(tiers, key=lambda t: t.rank, reverse=True):
        if ctx.hardware.meets_minimum(tier):
            option = candidate(ctx, tier, ctx.overrides)
            if option.fits:
                return Choice(option, reduced=False)
    # Memory reliefs (CUDA graphs off, a higher utilization) are for GPUs below every documented
    # minimum; on others, settings that do not fit are the user's to change (see refuse_overrides).
    relieve = not any(ctx.hardware.meets_minimum(t) for t in tiers)
    # The tier that keeps the longest context, the lowest on a tie: eight 12 GB GPUs serve tp8's
    # full context where one of them holds light's only at 2,048 tokens.
    options = [o for o in (_ladder(ctx, t, relieve) for t in sorted(tiers, key=lambda t: t.rank)) if o is not None]
    if not options:
        return None
    return Choice(max(options, key=lambda o: (o.settings.max_model_len, -o.tier.rank)), reduced=True)


def try_select(ctx: Context, tier: TierProfile | None) -> Choice | None:
    """The plan's choice (`tier` forced, or the best), or None when nothing fits (refusals say why)."""
    if tier is None:
        return best_choice(ctx)
    if ctx.hardware.count < tier.gpu_count:
        return None
    option = candidate(ctx, tier, ctx.overrides)
    if option.fits:
        return Choice(option, reduced=not ctx.hardware.meets_minimum(tier), forced=True)
    # A forced tier may still be served reduced where the planner itself would choose it so (T4: light).
    best = best_choice(ctx)
    if best is not None and best.candidate.tier.name == tier.name:
        return replace(best, forced=True)
    return None
