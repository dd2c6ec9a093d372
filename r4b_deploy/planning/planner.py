"""The planner: inventory + model spec + tiers + memory model -> one frozen Plan.

Selection: the highest tier (light < medium < heavy < tp8) whose documented minimum the GPUs
meet and whose settings the memory arithmetic holds. Below every minimum, the lowest tier that
still serves, with its context shrunk and memory relieved step by step (a "reduced" plan).
A plan never carries settings vLLM would refuse: one full max_model_len sequence fits the KV
cache, tensor parallelism divides the heads, bf16 only where the GPU has it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from r4b_deploy.errors import InfeasibleError, UsageError
from r4b_deploy.hardware.inventory import BYTES_PER_GB, BYTES_PER_GIB, GPU, Inventory
from r4b_deploy.planning import memory as mem
from r4b_deploy.planning.memory import MemoryModel, ReliefStep, ServeSettings
from r4b_deploy.planning.plan import (
    MemoryBreakdown,
    Plan,
    PlanRequest,
    ReplicaAdvice,
    TierFit,
    VllmSettings,
)
from r4b_deploy.planning.profiles import REHEARSAL_TIER_NAME, TierProfile, load_rehearsal_tier, load_tiers
from r4b_deploy.spec import ModelSpec, model_spec

# vLLM listens on every interface inside its container or process; the host side of the port is
# bound to 127.0.0.1 by the runtimes, which may rewrite the --host/--port values (never others).
LISTEN_HOST = "0.0.0.0"
# R-4B has no video input: a zero limit keeps vLLM from profiling (and reserving for) video.
NO_VIDEO_LIMIT = {"video": 0}
# Per decoder layer, tensor parallelism all-reduces twice (after attention and after the MLP).
ALL_REDUCES_PER_LAYER = 2
GPUS_LIST_HINT = "`r4b-deploy gpus --catalog` lists the GPUs the planner knows by name"
OPTION_FLAGS = {
    "max_model_len": "--max-model-len",
    "max_num_seqs": "--max-num-seqs",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_dtype": "--kv-cache-dtype",
    "images_per_prompt": "--images-per-prompt",
}
_UTILIZATION_STEP = 0.01


def resolve_inventory(req: PlanRequest) -> Inventory:
    """The GPUs to plan for: named (--gpu), read from a file (--inventory), or measured (NVML)."""
    if req.gpu and req.inventory_file:
        raise UsageError(
            "--gpu and --inventory both say which GPUs to plan for",
            fix="give one: --gpu NAME[:COUNT] to plan without a GPU, or --inventory FILE from `r4b-deploy gpus --json`",
        )
    if req.gpu:
        from r4b_deploy.hardware.catalog import inventory_from_catalog

        return inventory_from_catalog(req.gpu)
    if req.inventory_file:
        from r4b_deploy.hardware.inventory import load_inventory_file

        return load_inventory_file(req.inventory_file)
    from r4b_deploy.hardware.probe import probe_inventory

    return probe_inventory()


# ------------------------------------------------------------------------------------ helpers


def _gb(n_bytes: int | float) -> str:
    return f"{n_bytes / BYTES_PER_GB:.1f} GB"


def _gib(n_bytes: int | float) -> str:
    return f"{n_bytes / BYTES_PER_GIB:.2f} GiB"


def _n(value: int) -> str:
    return f"{value:,}"


def _cc(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


@dataclass(frozen=True)
class _Overrides:
    """The user's command-line values (None: the tier decides)."""

    max_model_len: int | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_dtype: Literal["auto", "fp8"] | None = None
    images_per_prompt: int | None = None

    @classmethod
    def from_request(cls, req: PlanRequest) -> _Overrides:
        return cls(**{f.name: getattr(req, f.name) for f in fields(cls)})

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def flags(self) -> str:
        return " ".join(f"{OPTION_FLAGS[name]} {getattr(self, name)}" for name in self.given())


@dataclass(frozen=True)
class _Hardware:
    inventory: Inventory
    gpus: tuple[GPU, ...]  # by index
    weakest: GPU  # the plan is made for this one: least memory, then lowest compute capability
    dtype: Literal["bfloat16", "float16"]

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def mixed(self) -> bool:
        return len({(g.name, g.memory_total_bytes, g.compute_capability) for g in self.gpus}) > 1

    def label(self) -> str:
        if self.mixed:
            names = ", ".join(f"{g.name} ({_gb(g.memory_total_bytes)})" for g in self.gpus)
            return f"{self.count} mixed GPUs: {names}"
        each = " each" if self.count > 1 else ""
        w = self.weakest
        return f"{self.count}× {w.name} ({_gb(w.memory_total_bytes)}{each}, compute {w.compute_capability})"

    def meets_minimum(self, tier: TierProfile) -> bool:
        return (
            self.count >= tier.gpu_count
            and self.weakest.memory_total_bytes >= tier.min_memory_gb_per_gpu * BYTES_PER_GB
        )


@dataclass(frozen=True)
class _Candidate:
    tier: TierProfile
    settings: ServeSettings
    memory: MemoryBreakdown
    relief: ReliefStep | None = None

    @property
    def fits(self) -> bool:
        return mem.fits(self.memory, self.settings)


@dataclass(frozen=True)
class _Choice:
    candidate: _Candidate
    reduced: bool  # settings differ from the tier's, or the GPUs are below its documented minimum
    forced: bool = False


@dataclass(frozen=True)
class _Context:
    spec: ModelSpec
    mm: MemoryModel
    tiers: tuple[TierProfile, ...]
    hw: _Hardware
    ov: _Overrides

    def without_overrides(self) -> _Context:
        return replace(self, ov=_Overrides())


def _hardware(inventory: Inventory, spec: ModelSpec) -> _Hardware:
    if not inventory.gpus:
        raise UsageError(
            "the inventory lists no GPU",
            fix="plan for a named GPU with --gpu NAME[:COUNT], or rehearse on a CPU with --rehearsal",
        )
    gpus = tuple(sorted(inventory.gpus, key=lambda g: g.index))
    weakest = min(gpus, key=lambda g: (g.memory_total_bytes, _cc(g.compute_capability)))
    lowest_cc = min(_cc(g.compute_capability) for g in gpus)
    dtype: Literal["bfloat16", "float16"] = (
        "bfloat16" if lowest_cc >= _cc(spec.min_compute_capability_bf16) else "float16"
    )
    return _Hardware(inventory=inventory, gpus=gpus, weakest=weakest, dtype=dtype)


# ------------------------------------------------------------------------------ the arithmetic


def _settings(ctx: _Context, tier: TierProfile, ov: _Overrides) -> ServeSettings:
    """The tier's targets with the user's overrides on top; vLLM's batching default filled in."""
    v = tier.vllm
    max_num_seqs = ov.max_num_seqs if ov.max_num_seqs is not None else v.max_num_seqs
    batched = v.max_num_batched_tokens or mem.vllm_default_batching(ctx.hw.weakest, ctx.mm).max_num_batched_tokens
    return ServeSettings(
        dtype=ctx.hw.dtype,
        tensor_parallel_size=tier.tensor_parallel_size,
        max_model_len=ov.max_model_len if ov.max_model_len is not None else v.max_model_len,
        max_num_seqs=max_num_seqs,
        # vLLM refuses max_num_batched_tokens < max_num_seqs.
        max_num_batched_tokens=max(batched, max_num_seqs),
        gpu_memory_utilization=(
            ov.gpu_memory_utilization if ov.gpu_memory_utilization is not None else v.gpu_memory_utilization
        ),
        kv_cache_dtype=ov.kv_cache_dtype if ov.kv_cache_dtype is not None else v.kv_cache_dtype,
        images_per_prompt=ov.images_per_prompt if ov.images_per_prompt is not None else v.images_per_prompt,
        enforce_eager=v.enforce_eager,
    )


def _apply_relief(s: ServeSettings, relief: ReliefStep | None, ov: _Overrides) -> ServeSettings:
    """A relief step frees memory; it never changes a value the user set."""
    if relief is None:
        return s
    if relief.enforce_eager:
        s = s.with_(enforce_eager=True)
    if (
        relief.gpu_memory_utilization is not None
        and ov.gpu_memory_utilization is None
        and relief.gpu_memory_utilization > s.gpu_memory_utilization
    ):
        s = s.with_(gpu_memory_utilization=relief.gpu_memory_utilization)
    return s


def _candidate(
    ctx: _Context,
    tier: TierProfile,
    ov: _Overrides,
    relief: ReliefStep | None = None,
    max_model_len: int | None = None,
    gpu: GPU | None = None,
) -> _Candidate:
    s = _apply_relief(_settings(ctx, tier, ov), relief, ov)
    if max_model_len is not None:
        s = s.with_(max_model_len=max_model_len)
    total = (gpu or ctx.hw.weakest).memory_total_bytes
    return _Candidate(tier=tier, settings=s, memory=mem.estimate(total, ctx.spec, s, ctx.mm), relief=relief)


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


def _ladder(ctx: _Context, tier: TierProfile, relieve: bool) -> _Candidate | None:
    """The largest context that fits (unless the user fixed it), trying the memory reliefs at each
    length in order when `relieve` (hardware below every documented minimum)."""
    if ctx.hw.count < tier.gpu_count:
        return None
    target = _settings(ctx, tier, ctx.ov).max_model_len
    lengths = (
        [target] if ctx.ov.max_model_len is not None else _shrink_steps(target, ctx.mm.reduced_plan.min_max_model_len)
    )
    reliefs: list[ReliefStep | None] = [None, *(ctx.mm.reduced_plan.relief_steps if relieve else [])]
    for length in lengths:
        tried: set[ServeSettings] = set()
        for relief in reliefs:
            candidate = _candidate(ctx, tier, ctx.ov, relief, max_model_len=length)
            if candidate.settings in tried:
                continue
            tried.add(candidate.settings)
            if candidate.fits:
                return candidate
    return None


def _auto(ctx: _Context, tiers: tuple[TierProfile, ...] | None = None) -> _Choice | None:
    """The highest tier the hardware holds; else the lowest that serves reduced; else None."""
    tiers = tiers if tiers is not None else ctx.tiers
    for tier in sorted(tiers, key=lambda t: t.rank, reverse=True):
        if ctx.hw.meets_minimum(tier):
            candidate = _candidate(ctx, tier, ctx.ov)
            if candidate.fits:
                return _Choice(candidate, reduced=False)
    # Memory reliefs (CUDA graphs off, a higher utilization) are for GPUs below every documented
    # minimum; on others, settings that do not fit are the user's to change (see _refuse_overrides).
    relieve = not any(ctx.hw.meets_minimum(t) for t in tiers)
    for tier in sorted(tiers, key=lambda t: t.rank):
        candidate = _ladder(ctx, tier, relieve)
        if candidate is not None:
            return _Choice(candidate, reduced=True)
    return None


def _try_select(ctx: _Context, tier: TierProfile | None) -> _Choice | None:
    """The plan's choice, or None when nothing fits (the caller says why)."""
    if tier is None:
        return _auto(ctx)
    if ctx.hw.count < tier.gpu_count:
        return None
    candidate = _candidate(ctx, tier, ctx.ov)
    if candidate.fits:
        return _Choice(candidate, reduced=not ctx.hw.meets_minimum(tier), forced=True)
    # A forced tier may still be served reduced where the planner itself would choose it so (T4: light).
    auto = _auto(ctx)
    if auto is not None and auto.candidate.tier.name == tier.name:
        return replace(auto, forced=True)
    return None


# ------------------------------------------------------------------------------- refusals


def _nearest(ctx: _Context, tier: TierProfile | None, name: str) -> object | None:
    """The value of one overridden option nearest to the user's with which a plan exists, the others kept."""
    requested = getattr(ctx.ov, name)

    def ok(value: object) -> bool:
        return _try_select(replace(ctx, ov=replace(ctx.ov, **{name: value})), tier) is not None

    def largest_below(high: int, low: int) -> int | None:
        best = None
        while low <= high:  # a plan exists for every value below one that has a plan
            mid = (low + high) // 2
            if ok(mid):
                best, low = mid, mid + 1
            else:
                high = mid - 1
        return best

    if name in ("max_model_len", "max_num_seqs"):
        return largest_below(requested - 1, 1)
    if name == "images_per_prompt":
        return largest_below(requested - 1, 0)
    if name == "gpu_memory_utilization":
        step = math.floor(round(requested / _UTILIZATION_STEP, 6)) + 1
        while step * _UTILIZATION_STEP <= 1 + 1e-9:
            value = round(step * _UTILIZATION_STEP, 2)
            if ok(value):
                return value
            step += 1
        return None
    if name == "kv_cache_dtype":
        return "fp8" if requested == "auto" and ok("fp8") else None
    return None


def _shortfall_text(ctx: _Context, s: ServeSettings) -> str:
    need = mem.required_gpu_memory_bytes(ctx.spec, s, ctx.mm)
    have = ctx.hw.weakest.memory_total_bytes
    return f"needs {_gb(need)} per GPU, {ctx.hw.weakest.name} has {_gb(have)}: short by {_gb(max(0, need - have))}"


def _refuse_overrides(ctx: _Context, forced: TierProfile | None, base: _Choice) -> InfeasibleError:
    """The hardware serves without the user's values, not with them: say by how much, and what would fit."""
    tier = base.candidate.tier
    candidate = _candidate(ctx, tier, ctx.ov, base.candidate.relief)
    s = candidate.settings
    nearest = []
    for name in ctx.ov.given():
        value = _nearest(ctx, forced, name)
        flag = OPTION_FLAGS[name]
        nearest.append(f"{flag} {value}" if value is not None else f"no {flag} fits with the other values")
    return InfeasibleError(
        f"{ctx.ov.flags()} does not fit on {ctx.hw.label()} with profile {tier.name}: the KV cache holds "
        f"{_n(candidate.memory.kv_tokens)} tokens, one {_n(s.max_model_len)}-token sequence needs "
        f"{_n(s.max_model_len)}; {_shortfall_text(ctx, s)}",
        fix=f"nearest values that fit: {'; '.join(nearest)}; or leave the option out and let the planner choose",
    )


def _refuse_tier(ctx: _Context, tier: TierProfile) -> InfeasibleError:
    if ctx.hw.count < tier.gpu_count:
        return InfeasibleError(
            f"profile {tier.name} needs {tier.gpu_count} GPUs; the inventory has {ctx.hw.count} ({ctx.hw.label()})",
            fix="plan for more GPUs (--gpu NAME:COUNT), or leave --profile out to let the planner choose",
        )
    candidate = _candidate(ctx, tier, ctx.ov)
    s = candidate.settings
    auto = _auto(ctx)
    hint = f"--profile {auto.candidate.tier.name} fits" if auto is not None else "no profile fits this hardware"
    return InfeasibleError(
        f"profile {tier.name} ({_n(s.max_model_len)}-token context, {s.images_per_prompt} image(s) per prompt, "
        f"gpu_memory_utilization {s.gpu_memory_utilization:g}) does not fit on {ctx.hw.label()}: "
        f"{_shortfall_text(ctx, s)} (its documented minimum is {tier.min_memory_gb_per_gpu:g} GB per GPU)",
        fix=f"{hint}; or lower --max-model-len (the KV cache holds {_n(candidate.memory.kv_tokens)} tokens)",
    )


def _refuse_hardware(ctx: _Context) -> InfeasibleError:
    """Nothing serves: state the shortfall of the smallest plan, in GB."""
    base = ctx.without_overrides()
    lenient = ctx.mm.reduced_plan.relief_steps[-1] if ctx.mm.reduced_plan.relief_steps else None
    best: tuple[int, str] | None = None
    for tier in ctx.tiers:
        if ctx.hw.count < tier.gpu_count:
            continue
        floor = min(tier.vllm.max_model_len, ctx.mm.reduced_plan.min_max_model_len)
        s = _candidate(base, tier, base.ov, lenient, max_model_len=floor).settings
        need = mem.required_gpu_memory_bytes(ctx.spec, s, ctx.mm)
        described = (
            f"{tier.name}, {_n(s.max_model_len)}-token context, {s.images_per_prompt} image(s) per prompt, "
            f"CUDA graphs {'off' if s.enforce_eager else 'on'}, gpu_memory_utilization {s.gpu_memory_utilization:g}"
        )
        if best is None or need < best[0]:
            best = (need, f"the smallest plan ({described}) {_shortfall_text(ctx, s)}")
    if best is None:
        counts = sorted({t.gpu_count for t in ctx.tiers})
        return InfeasibleError(
            f"no profile runs on {ctx.hw.count} GPU(s): profiles need {counts}", fix="plan for more GPUs"
        )
    light = min(ctx.tiers, key=lambda t: t.rank)
    alternatives = f"a GPU with at least {light.min_memory_gb_per_gpu:g} GB ({light.name}: {', '.join(light.examples)})"
    multi = [t for t in ctx.tiers if t.gpu_count > 1]
    if multi:
        alternatives += (
            f", or {multi[0].gpu_count} GPUs of at least {multi[0].min_memory_gb_per_gpu:g} GB for {multi[0].name}"
        )
    return InfeasibleError(
        f"R-4B cannot be served on {ctx.hw.label()}: {best[1]}", fix=f"use {alternatives}; {GPUS_LIST_HINT}"
    )


# ------------------------------------------------------------------------------- selection


def _select(ctx: _Context, profile: str | None) -> _Choice:
    tier = None
    if profile is not None:
        by_name = {t.name: t for t in ctx.tiers}
        tier = by_name.get(profile)
        if tier is None:
            names = ", ".join([*by_name, REHEARSAL_TIER_NAME])
            raise UsageError(
                f"unknown profile {profile!r}; profiles: {names}", fix=f"use --profile with one of: {names}"
            )
    choice = _try_select(ctx, tier)
    if choice is not None:
        return choice
    if tier is not None and ctx.hw.count < tier.gpu_count:
        raise _refuse_tier(ctx, tier)
    if ctx.ov.given():
        base = _try_select(ctx.without_overrides(), tier)
        if base is not None:
            raise _refuse_overrides(ctx, tier, base)
    if tier is not None:
        raise _refuse_tier(ctx, tier)
    raise _refuse_hardware(ctx)


# ------------------------------------------------------------------------------- the Plan


def vllm_args(
    model: str,
    spec: ModelSpec,
    s: ServeSettings,
    *,
    trust_remote_code: bool,
    port: int,
    gpu_memory_utilization: bool = True,
) -> list[str]:
    """The exact argument list after `vllm serve`: the model first, --host/--port last."""
    args = [model, "--served-model-name", spec.served_model_name]
    if trust_remote_code:
        args.append("--trust-remote-code")
    args += [
        "--dtype",
        s.dtype,
        "--max-model-len",
        str(s.max_model_len),
        "--max-num-seqs",
        str(s.max_num_seqs),
        "--max-num-batched-tokens",
        str(s.max_num_batched_tokens),
    ]
    if gpu_memory_utilization:
        args += ["--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}"]
    if s.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(s.tensor_parallel_size)]
    if s.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", s.kv_cache_dtype]
    if s.enforce_eager:
        args.append("--enforce-eager")
    args += ["--limit-mm-per-prompt", json.dumps(_mm_limit(s), separators=(",", ":"))]
    if spec.thinking.reasoning_parser:
        args += ["--reasoning-parser", spec.thinking.reasoning_parser]
    args += ["--host", LISTEN_HOST, "--port", str(port)]
    return args


def _mm_limit(s: ServeSettings) -> dict[str, int]:
    return {"image": s.images_per_prompt, **NO_VIDEO_LIMIT}


def _vllm_settings(
    model: str, spec: ModelSpec, s: ServeSettings, *, trust_remote_code: bool, gpu: bool
) -> VllmSettings:
    port = VllmSettings.model_fields["port"].default
    return VllmSettings(
        args=vllm_args(model, spec, s, trust_remote_code=trust_remote_code, port=port, gpu_memory_utilization=gpu),
        model=model,
        served_model_name=spec.served_model_name,
        tensor_parallel_size=s.tensor_parallel_size,
        max_model_len=s.max_model_len,
        max_num_seqs=s.max_num_seqs,
        max_num_batched_tokens=s.max_num_batched_tokens,
        gpu_memory_utilization=s.gpu_memory_utilization if gpu else 0.0,
        dtype=s.dtype,
        kv_cache_dtype=s.kv_cache_dtype,
        limit_mm_per_prompt=_mm_limit(s),
        reasoning_parser=spec.thinking.reasoning_parser,
        enforce_eager=s.enforce_eager,
    )


def _tier_fits(ctx: _Context, chosen: _Choice) -> list[TierFit]:
    out = []
    for tier in ctx.tiers:
        is_chosen = tier.name == chosen.candidate.tier.name
        meets = ctx.hw.meets_minimum(tier)
        if ctx.hw.count < tier.gpu_count:
            candidate, fits = None, False
            note = f"needs {tier.gpu_count} GPUs, has {ctx.hw.count}"
        else:
            candidate = chosen.candidate if is_chosen else _candidate(ctx, tier, ctx.ov)
            fits = _candidate(ctx, tier, ctx.ov).fits
            m = candidate.memory
            holds = f"{m.max_concurrency:g} full {_n(candidate.settings.max_model_len)}-token sequences"
            if not meets:
                note = (
                    f"below the documented minimum {tier.min_memory_gb_per_gpu:g} GB per GPU "
                    f"({ctx.hw.weakest.name}: {_gb(ctx.hw.weakest.memory_total_bytes)})"
                )
                if fits and not is_chosen:
                    note += f"; the arithmetic alone would hold {holds}"
            elif not fits:
                context = _n(candidate.settings.max_model_len)
                note = f"KV cache holds {_n(m.kv_tokens)} tokens, under its {context}-token context"
            else:
                note = f"fits: {holds}"
                if not is_chosen and tier.rank < chosen.candidate.tier.rank:
                    note += f"; {chosen.candidate.tier.name} ranks higher"
            if is_chosen:
                label = "chosen with --profile" if chosen.forced else "chosen"
                note = f"{label}{' (reduced)' if chosen.reduced else ''}: {note}"
        out.append(
            TierFit(
                name=tier.name,
                rank=tier.rank,
                gpu_count=tier.gpu_count,
                min_memory_gb_per_gpu=tier.min_memory_gb_per_gpu,
                recommended_memory_gb_per_gpu=tier.recommended_memory_gb_per_gpu,
                meets_minimum=meets,
                fits=fits,
                chosen=is_chosen,
                max_model_len=candidate.settings.max_model_len
                if candidate
                else _settings(ctx, tier, ctx.ov).max_model_len,
                kv_tokens=candidate.memory.kv_tokens if candidate else 0,
                max_concurrency=candidate.memory.max_concurrency if candidate else 0.0,
                note=note,
            )
        )
    return out


def _replica_advice(ctx: _Context, chosen: _Choice) -> ReplicaAdvice | None:
    tier = chosen.candidate.tier
    used = tier.gpu_count
    if ctx.hw.count <= used and tier.tensor_parallel_size == 1:
        return None
    single_tiers = tuple(t for t in ctx.tiers if t.gpu_count == 1)
    # A single-GPU plan is its own replica; for a tensor-parallel plan, the best single-GPU tier.
    replica = chosen if tier.gpu_count == 1 else (_auto(ctx, single_tiers) if single_tiers else None)
    c = chosen.candidate
    plan_kv, plan_conc, plan_slots = c.memory.kv_tokens, c.memory.max_concurrency, c.settings.max_num_seqs
    if replica is None:
        return ReplicaAdvice(
            gpus_available=ctx.hw.count,
            gpus_used=used,
            replica_profile="",
            replicas=0,
            replica_max_model_len=0,
            replica_kv_tokens=0,
            replica_max_num_seqs=0,
            replicas_total_kv_tokens=0,
            replicas_total_concurrency=0.0,
            replicas_total_seq_slots=0,
            plan_kv_tokens=plan_kv,
            plan_concurrency=plan_conc,
            plan_seq_slots=plan_slots,
            prefer_replicas=False,
            summary=f"One {ctx.hw.weakest.name} cannot hold R-4B on its own: tensor parallelism is needed here.",
        )
    r = replica.candidate
    n = ctx.hw.count
    total_kv = n * r.memory.kv_tokens
    total_conc = round(n * r.memory.max_concurrency, 2)
    total_slots = n * r.settings.max_num_seqs
    if tier.gpu_count == 1:
        summary = (
            f"The plan uses {used} of {n} GPUs: {n} data-parallel replicas of {r.tier.name} (one deployment per GPU, "
            f"or vLLM's --data-parallel-size {n}) would hold {_n(total_kv)} KV tokens, {total_conc:g} full "
            f"{_n(r.settings.max_model_len)}-token sequences and {_n(total_slots)} batch slots in all: {n}× this plan."
        )
        prefer = True
    else:
        reductions = ctx.spec.language_model.num_hidden_layers * ALL_REDUCES_PER_LAYER
        prefer = not replica.reduced
        summary = (
            f"{n} data-parallel replicas of {r.tier.name} ({_n(r.settings.max_model_len)}-token context, one per GPU) "
            f"would hold {total_conc:g} full sequences and {_n(total_slots)} batch slots in all "
            f"({_n(total_kv)} KV tokens), against {tier.name}'s {plan_conc:g} full "
            f"{_n(c.settings.max_model_len)}-token sequences and {_n(plan_slots)} slots ({_n(plan_kv)} KV tokens); "
            f"each replica also skips {tier.name}'s {reductions} all-reduces per forward step, so "
            + (
                f"replicas usually serve far more: run --profile {r.tier.name} on each GPU unless single "
                f"requests need the {_n(c.settings.max_model_len)}-token context."
                if prefer
                else f"but one GPU holds only a reduced {r.tier.name} plan: {tier.name} is the safer choice."
            )
        )
    return ReplicaAdvice(
        gpus_available=n,
        gpus_used=used,
        replica_profile=r.tier.name,
        replicas=n,
        replica_max_model_len=r.settings.max_model_len,
        replica_kv_tokens=r.memory.kv_tokens,
        replica_max_num_seqs=r.settings.max_num_seqs,
        replicas_total_kv_tokens=total_kv,
        replicas_total_concurrency=total_conc,
        replicas_total_seq_slots=total_slots,
        plan_kv_tokens=plan_kv,
        plan_concurrency=plan_conc,
        plan_seq_slots=plan_slots,
        prefer_replicas=prefer,
        summary=summary,
    )


def _reasons(ctx: _Context, chosen: _Choice, tiers: list[TierFit], advice: ReplicaAdvice | None) -> list[str]:
    c = chosen.candidate
    s, m, tier = c.settings, c.memory, c.tier
    hw = ctx.hw
    reasons = [f"Hardware: {hw.label()} (inventory from {hw.inventory.source})."]
    reasons += [f"Inventory: {note}" for note in hw.inventory.notes]
    if chosen.forced:
        how = "forced with --profile"
    elif chosen.reduced and not hw.meets_minimum(tier):
        how = "below every tier's documented minimum, so the lowest tier that still serves, reduced to fit"
    elif chosen.reduced:
        how = "no tier holds its settings as asked, so the lowest tier that serves, reduced to fit"
    else:
        how = (
            f"the highest tier this hardware holds ({tier.gpu_count}× ≥ {tier.min_memory_gb_per_gpu:g} GB documented "
            f"minimum, and the arithmetic holds its {_n(s.max_model_len)}-token context)"
        )
    reasons.append(f"Profile {tier.name}: {how}. {tier.description}")
    reasons += [f"Profile {t.name}: {t.note}." for t in tiers if not t.chosen]
    min_bf16 = ctx.spec.min_compute_capability_bf16
    low = min((g.compute_capability for g in hw.gpus), key=_cc)
    relation = "≥" if s.dtype == "bfloat16" else "<"
    reasons.append(f"dtype {s.dtype}: compute capability {low} {relation} {min_bf16} (bf16 needs Ampere or newer).")
    default = mem.vllm_default_batching(hw.weakest, ctx.mm)
    if tier.vllm.max_num_batched_tokens is not None:
        source = "set by the tier"
    elif s.max_num_batched_tokens > default.max_num_batched_tokens:
        source = f"raised from vLLM's default {default.max_num_batched_tokens} to max_num_seqs (vLLM requires it)"
    else:
        large = default == ctx.mm.default_batching.large
        source = "vLLM's default for " + (
            f"GPUs with ≥ {ctx.mm.default_batching.large_gpu_min_memory_gib:g} GiB (not A100)"
            if large
            else f"GPUs under {ctx.mm.default_batching.large_gpu_min_memory_gib:g} GiB or A100s"
        )
    reasons.append(f"max_num_batched_tokens {s.max_num_batched_tokens}: {source}.")
    graphs = "CUDA graphs off (--enforce-eager)" if s.enforce_eager else f"CUDA graphs {_gib(m.cuda_graph_bytes)}"
    reasons.append(
        f"Per GPU: budget {_gib(m.budget_bytes)} ({s.gpu_memory_utilization:g} × {_gib(m.gpu_memory_bytes)}) − weights "
        f"{_gib(m.weights_bytes)} − activations {_gib(m.activation_bytes)} − vision encoder "
        f"{_gib(m.vision_encoder_bytes)} ({s.images_per_prompt} worst-case image(s)) − non-torch "
        f"{_gib(m.non_torch_bytes)} − {graphs} = KV cache {_gib(m.kv_cache_bytes)} → {_n(m.kv_tokens)} tokens "
        f"at {_n(m.kv_bytes_per_token)} B/token in {ctx.mm.kv_block_size_tokens}-token blocks → max concurrency "
        f"{m.max_concurrency:g} full {_n(s.max_model_len)}-token sequences."
    )
    if advice is not None:
        reasons.append(advice.summary)
    return reasons


def _warnings(ctx: _Context, chosen: _Choice, gpu_indices: list[int]) -> list[str]:
    c = chosen.candidate
    s, tier = c.settings, c.tier
    hw = ctx.hw
    out: list[str] = []
    if hw.mixed:
        w = hw.weakest
        out.append(
            f"Mixed GPUs: planned for the weakest, GPU {w.index} {w.name} ({_gb(w.memory_total_bytes)}, "
            f"compute {w.compute_capability}); the larger GPUs leave memory unused."
        )
    for g in hw.gpus:
        if g.mig_enabled:
            out.append(
                f"GPU {g.index} ({g.name}) has MIG enabled: vLLM runs on one MIG instance, not the whole GPU, and this "
                "plan assumes the whole GPU's memory; disable MIG or plan for the instance's memory (--inventory)."
            )
    if s.dtype == "float16":
        out.append(
            f"float16, not bfloat16: compute capability below {ctx.spec.min_compute_capability_bf16} has no bf16; "
            "R-4B was trained in bf16, so rare float16 overflows are possible."
        )
    if not hw.meets_minimum(tier):
        out.append(
            f"{hw.weakest.name} ({_gb(hw.weakest.memory_total_bytes)}) is below profile {tier.name}'s documented "
            f"minimum of {tier.min_memory_gb_per_gpu:g} GB per GPU: the plan works by the arithmetic, "
            "with little headroom."
        )
    target = _settings(ctx, tier, ctx.ov)
    if s.max_model_len < target.max_model_len:
        out.append(
            f"Reduced: max_model_len {_n(s.max_model_len)} instead of profile {tier.name}'s {_n(target.max_model_len)} "
            f"(the KV cache holds {_n(c.memory.kv_tokens)} tokens)."
        )
    if s.enforce_eager and not target.enforce_eager:
        out.append("Reduced: CUDA graphs off (--enforce-eager) to free their memory; decoding is slower.")
    if s.gpu_memory_utilization > target.gpu_memory_utilization:
        out.append(
            f"Reduced: gpu_memory_utilization {s.gpu_memory_utilization:g} instead of "
            f"{target.gpu_memory_utilization:g}; other processes on the GPU leave less room."
        )
    image_tokens = s.images_per_prompt * ctx.spec.vision.max_image_tokens
    if s.images_per_prompt and image_tokens >= s.max_model_len:
        out.append(
            f"{s.images_per_prompt} worst-case image(s) ({_n(image_tokens)} tokens) do not fit max_model_len "
            f"{_n(s.max_model_len)}: vLLM rejects such requests; smaller images cost fewer tokens "
            f"(a one-tile image ≈ {_n(ctx.spec.vision.one_tile_image_tokens)})."
        )
    fp8_native = ctx.mm.warnings.fp8_kv_native_min_compute_capability
    if s.kv_cache_dtype == "fp8" and min(_cc(g.compute_capability) for g in hw.gpus) < _cc(fp8_native):
        out.append(
            f"--kv-cache-dtype fp8 below compute capability {fp8_native} has no FP8 hardware: vLLM converts in "
            "software or picks another attention backend; check the startup log."
        )
    if s.gpu_memory_utilization > ctx.mm.warnings.high_gpu_memory_utilization:
        out.append(
            f"gpu_memory_utilization {s.gpu_memory_utilization:g} leaves little headroom for fragmentation and "
            "anything else on the GPU."
        )
    by_index = {g.index: g for g in hw.gpus}
    for index in gpu_indices:
        g = by_index[index]
        budget = mem.budget_bytes(g.memory_total_bytes, s)
        if g.memory_free_bytes is not None and g.memory_free_bytes < budget:
            out.append(
                f"GPU {g.index} has {_gib(g.memory_free_bytes)} free, below the {_gib(budget)} budget "
                f"({s.gpu_memory_utilization:g} × {_gib(g.memory_total_bytes)}): vLLM refuses to start while other "
                "processes hold that memory; stop them first."
            )
    if s.tensor_parallel_size > 1 and hw.inventory.source == "nvml" and not hw.inventory.nvlink_pairs:
        out.append(
            f"No NVLink measured between the GPUs: tensor parallelism {s.tensor_parallel_size} all-reduces over PCIe."
        )
    return out


def _upgrades(ctx: _Context, chosen: _Choice) -> list[str]:
    c = chosen.candidate
    tier, s = c.tier, c.settings
    hw = ctx.hw
    out: list[str] = []
    have = hw.weakest.memory_total_bytes
    for target_gb, label in (
        (tier.min_memory_gb_per_gpu, "documented minimum"),
        (tier.recommended_memory_gb_per_gpu, "recommended"),
    ):
        if have >= target_gb * BYTES_PER_GB:
            continue
        bigger = hw.weakest.model_copy(update={"memory_total_bytes": int(target_gb * BYTES_PER_GB)})
        full = _candidate(ctx, tier, ctx.ov, gpu=bigger)
        if full.fits:
            out.append(
                f"{tier.name} at its {label} {target_gb:g} GB per GPU: its full settings "
                f"({_n(full.settings.max_model_len)}-token context, CUDA graphs on) and a KV cache of "
                f"{_n(full.memory.kv_tokens)} tokens ({full.memory.max_concurrency:g} full sequences), against "
                f"{_n(c.memory.kv_tokens)} now."
            )
            break
    for higher in ctx.tiers:
        if higher.rank <= tier.rank or (hw.meets_minimum(higher) and _candidate(ctx, higher, ctx.ov).fits):
            continue
        v = higher.vllm
        examples = f" (e.g. {', '.join(higher.examples)})" if higher.examples else ""
        out.append(
            f"{higher.name}: {higher.gpu_count}× ≥ {higher.min_memory_gb_per_gpu:g} GB per GPU{examples} buys "
            f"a {_n(v.max_model_len)}-token context, {v.images_per_prompt} images per prompt and {v.max_num_seqs} "
            f"concurrent sequences: {higher.description}"
        )
    fp8_native = _cc(ctx.mm.warnings.fp8_kv_native_min_compute_capability)
    if s.kv_cache_dtype == "auto" and all(_cc(g.compute_capability) >= fp8_native for g in hw.gpus):
        fp8 = _candidate(ctx, tier, replace(ctx.ov, kv_cache_dtype="fp8"), c.relief, max_model_len=s.max_model_len)
        out.append(
            f"--kv-cache-dtype fp8 halves the KV bytes per token: {_n(fp8.memory.kv_tokens)} tokens "
            f"({fp8.memory.max_concurrency:g} full sequences) on the same GPU, at a small accuracy cost."
        )
    return out


def _gpu_plan(req: PlanRequest, inventory: Inventory) -> Plan:
    spec = model_spec()
    ctx = _Context(
        spec=spec,
        mm=mem.memory_model(),
        tiers=load_tiers(),
        hw=_hardware(inventory, spec),
        ov=_Overrides.from_request(req),
    )
    limit = spec.language_model.max_position_embeddings
    if req.max_model_len is not None and req.max_model_len > limit:
        raise UsageError(
            f"--max-model-len {req.max_model_len} exceeds R-4B's max_position_embeddings {limit}",
            fix=f"use --max-model-len {limit} or less",
        )
    chosen = _select(ctx, req.profile)
    c = chosen.candidate
    gpu_indices = [g.index for g in ctx.hw.gpus[: c.tier.gpu_count]]
    tiers = _tier_fits(ctx, chosen)
    advice = _replica_advice(ctx, chosen)
    return Plan(
        model_id=spec.model_id,
        profile=c.tier.name,
        profile_description=c.tier.description,
        inventory_source=inventory.source,
        driver_version=inventory.driver_version,
        cuda_driver_version=inventory.cuda_driver_version,
        gpus=list(ctx.hw.gpus),
        vllm=_vllm_settings(spec.model_id, spec, c.settings, trust_remote_code=spec.trust_remote_code, gpu=True),
        memory=c.memory,
        reasons=_reasons(ctx, chosen, tiers, advice),
        warnings=_warnings(ctx, chosen, gpu_indices),
        upgrades=_upgrades(ctx, chosen),
        reduced=chosen.reduced,
        gpu_indices=gpu_indices,
        tiers=tiers,
        replicas=advice,
    )


def _rehearsal_plan(req: PlanRequest) -> Plan:
    """The CPU rehearsal: the tiny model, the flags verified on vLLM's CPU build, no GPU."""
    gpu_only = {
        "--gpu": req.gpu,
        "--inventory": req.inventory_file,
        "--gpu-memory-utilization": req.gpu_memory_utilization,
        "--kv-cache-dtype": req.kv_cache_dtype,
    }
    given = [flag for flag, value in gpu_only.items() if value is not None]
    if given:
        verb = "does" if len(given) == 1 else "do"
        raise UsageError(
            f"{', '.join(given)} {verb} not apply to the CPU rehearsal", fix="drop it, or drop --rehearsal"
        )
    if req.profile not in (None, REHEARSAL_TIER_NAME):
        raise UsageError(f"--profile {req.profile} and --rehearsal exclude each other", fix="give one of them")
    from r4b_deploy.rehearsal.vllm_cpu import rehearsal_profile

    spec = model_spec()
    tier = load_rehearsal_tier()
    cpu = rehearsal_profile()
    max_model_len = req.max_model_len or cpu.max_model_len
    max_num_seqs = req.max_num_seqs or tier.max_num_seqs
    s = ServeSettings(
        dtype=tier.dtype,
        tensor_parallel_size=1,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        # Without chunked prefill (not every CPU build has it) vLLM needs a whole context per step.
        max_num_batched_tokens=max(max_model_len, max_num_seqs),
        gpu_memory_utilization=0.0,
        kv_cache_dtype="auto",
        images_per_prompt=req.images_per_prompt if req.images_per_prompt is not None else tier.images_per_prompt,
        enforce_eager=tier.enforce_eager,
    )
    kv_space = cpu.env.get("VLLM_CPU_KVCACHE_SPACE", "vLLM's default")
    zeros = dict.fromkeys(MemoryBreakdown.model_fields, 0)
    return Plan(
        model_id=tier.model,
        profile=tier.name,
        profile_description=tier.description,
        rehearsal=True,
        inventory_source="rehearsal",
        gpus=[],
        vllm=_vllm_settings(tier.model, spec, s, trust_remote_code=tier.trust_remote_code, gpu=False),
        memory=MemoryBreakdown(**{**zeros, "max_concurrency": 0.0}),
        reasons=[
            f"CPU rehearsal: the tiny R-4B-architecture model at {tier.model} on vLLM's CPU build "
            f"({cpu.vllm_package}); no GPU is needed.",
            f"KV cache: VLLM_CPU_KVCACHE_SPACE={kv_space} GiB (profiles/vllm.yaml), not gpu_memory_utilization: "
            "the GPU memory breakdown does not apply and is left at zero.",
            f"max_model_len {max_model_len} from profiles/vllm.yaml; max_num_batched_tokens = max_model_len.",
        ],
    )


def make_plan(req: PlanRequest, inventory: Inventory | None = None) -> Plan:
    """Plan R-4B on `inventory` (default: the one `req` names, else the GPUs NVML measures)."""
    if req.rehearsal or req.profile == REHEARSAL_TIER_NAME:
        return _rehearsal_plan(req)
    if inventory is None:
        inventory = resolve_inventory(req)
    return _gpu_plan(req, inventory)
