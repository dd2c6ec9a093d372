"""Why no plan: the shortfall in GB, and the nearest values that would fit.

Each function builds the InfeasibleError (or UsageError) the planner raises; `select` decides
which one applies when the search finds nothing.
"""

from __future__ import annotations

import math
from dataclasses import replace

from r4b_deploy.errors import InfeasibleError, UsageError
from r4b_deploy.hardware.inventory import GPU
from r4b_deploy.planning import memory as arithmetic
from r4b_deploy.planning.plan import MemoryBreakdown, VllmSettings
from r4b_deploy.planning.profiles import REHEARSAL_TIER_NAME, TierProfile
from r4b_deploy.planning.search import OPTION_FLAGS, Choice, Context, best_choice, candidate, try_select
from r4b_deploy.planning.text import count_text, gb_text, gib_text

GPUS_LIST_HINT = "`r4b-deploy gpus --catalog` lists the GPUs the planner knows by name"
# --gpu-memory-utilization is searched in hundredths: the precision the tiers state it in.
_UTILIZATION_STEP = 0.01


def select(ctx: Context, profile: str | None) -> Choice:
    """The plan's choice for `profile` (None: the best tier), or the refusal that says why none."""
    tier = None
    if profile is not None:
        by_name = {t.name: t for t in ctx.tiers}
        tier = by_name.get(profile)
        if tier is None:
            names = ", ".join([*by_name, REHEARSAL_TIER_NAME])
            raise UsageError(
                f"unknown profile {profile!r}; profiles: {names}", fix=f"use --profile with one of: {names}"
            )
    choice = try_select(ctx, tier)
    if choice is not None:
        busy = busy_gpus(ctx, choice)
        if busy:
            raise refuse_busy(ctx, tier, choice, busy)
        return choice
    if tier is not None and ctx.hardware.count < tier.gpu_count:
        raise refuse_tier(ctx, tier)
    if any(g.memory_free_bytes is not None for g in ctx.hardware.gpus):
        # Would idle GPUs hold it? Then other processes are what stands in the way, not the GPU's size.
        idle = try_select(_idle(ctx), tier)
        busy = busy_gpus(ctx, idle) if idle is not None else []
        if idle is not None and busy:
            raise refuse_busy(ctx, tier, idle, busy)
    if ctx.overrides.given():
        base = try_select(ctx.without_overrides(), tier)
        if base is not None:
            raise refuse_overrides(ctx, tier, base)
    if tier is not None:
        raise refuse_tier(ctx, tier)
    raise refuse_hardware(ctx)


def used_gpus(ctx: Context, tier: TierProfile, replicas: int = 1) -> tuple[GPU, ...]:
    """The GPUs a plan of `replicas` engines of `tier` runs on (the first by index), and the one the
    search plans for."""
    used = ctx.hardware.gpus[: tier.gpu_count * replicas]
    return used if ctx.hardware.weakest in used else (*used, ctx.hardware.weakest)


def busy_gpus(ctx: Context, choice: Choice, replicas: int = 1) -> list[tuple[GPU, MemoryBreakdown]]:
    """The GPUs of `choice` (run `replicas` times) on which vLLM would refuse to start: too little
    free beside other processes."""
    settings = choice.candidate.settings
    out = []
    for gpu in used_gpus(ctx, choice.candidate.tier, replicas):
        memory = arithmetic.estimate(gpu, ctx.spec, settings, ctx.memory_model, ctx.vllm_version)
        if not arithmetic.starts(memory):
            out.append((gpu, memory))
    return out


def serving_choice(ctx: Context, tier: TierProfile | None) -> Choice | None:
    """The search's choice, kept only if vLLM starts on every GPU it uses: the one rule of a plan."""
    choice = try_select(ctx, tier)
    return choice if choice is not None and not busy_gpus(ctx, choice) else None


def _idle(ctx: Context) -> Context:
    """The same GPUs with nothing else on them (NVML's free memory dropped)."""
    hardware = ctx.hardware
    gpus = tuple(g.model_copy(update={"memory_free_bytes": None}) for g in hardware.gpus)
    weakest = hardware.weakest.model_copy(update={"memory_free_bytes": None})
    return replace(ctx, hardware=replace(hardware, gpus=gpus, weakest=weakest))


def lower_utilization(ctx: Context, tier: TierProfile | None, above: float) -> float | None:
    """The largest --gpu-memory-utilization below `above` (in hundredths) with which a plan serves."""
    step = math.ceil(round(above / _UTILIZATION_STEP, 6)) - 1
    while step > 0:
        value = round(step * _UTILIZATION_STEP, 2)
        if serving_choice(ctx.with_override("gpu_memory_utilization", value), tier) is not None:
            return value
        step -= 1
    return None


def free_text(ctx: Context, gpu: GPU, memory: MemoryBreakdown, settings: VllmSettings) -> str:
    """What vLLM asks to be free on `gpu` at start-up, term by term, against what is."""
    need = arithmetic.free_needed_bytes(memory, settings, ctx.memory_model)
    context = arithmetic.cuda_context_bytes(settings, ctx.memory_model)
    graphs = f" + {gb_text(memory.cuda_graph_headroom_bytes)} CUDA graphs" if memory.cuda_graph_headroom_bytes else ""
    return (
        f"vLLM needs {gb_text(need)} free at start-up on GPU {gpu.index} ({gpu.name}: "
        f"{settings.gpu_memory_utilization:g} × {gb_text(memory.gpu_memory_bytes)} CUDA reports + "
        f"{gb_text(context)} CUDA context{graphs}), it has {gb_text(_free_bytes(gpu, memory))} free"
    )


def _free_bytes(gpu: GPU, memory: MemoryBreakdown) -> int:
    return gpu.memory_free_bytes if gpu.memory_free_bytes is not None else memory.gpu_memory_bytes


def refuse_busy(
    ctx: Context, forced: TierProfile | None, choice: Choice, busy: list[tuple[GPU, MemoryBreakdown]]
) -> InfeasibleError:
    """Other processes hold memory the plan needs: the GPUs are big enough, the fix is to free them."""
    settings, tier = choice.candidate.settings, choice.candidate.tier
    shortfalls = []
    for gpu, memory in busy:
        need = arithmetic.free_needed_bytes(memory, settings, ctx.memory_model)
        shortfalls.append(f"{gb_text(max(0, need - _free_bytes(gpu, memory)))} on GPU {gpu.index}")
    lower = lower_utilization(ctx, forced, settings.gpu_memory_utilization)
    fix = f"free {', '.join(shortfalls)} (stop the processes nvidia-smi lists there)"
    fix += f", or lower --gpu-memory-utilization to {lower:g}" if lower is not None else ""
    return InfeasibleError(
        f"profile {tier.name} cannot start on {ctx.hardware.label()}: "
        + "; ".join(free_text(ctx, gpu, memory, settings) for gpu, memory in busy)
        + ": other processes hold the rest",
        fix=fix,
    )


def nearest_value(ctx: Context, tier: TierProfile | None, name: str) -> object | None:
    """The value of one overridden option nearest to the user's with which a plan exists, the others kept."""
    requested = getattr(ctx.overrides, name)

    def has_plan(value: object) -> bool:
        return serving_choice(ctx.with_override(name, value), tier) is not None

    def largest_below(high: int, low: int) -> int | None:
        best = None
        while low <= high:  # a plan exists for every value below one that has a plan
            middle = (low + high) // 2
            if has_plan(middle):
                best, low = middle, middle + 1
            else:
                high = middle - 1
        return best

    if name == "max_model_len":
        floor = arithmetic.min_max_model_len(ctx.spec, ctx.memory_model, ctx.overrides.images_per_prompt)
        return largest_below(requested - 1, floor)
    if name in ("max_num_seqs", "max_num_batched_tokens"):
        return largest_below(requested - 1, 1)
    if name == "images_per_prompt":
        return largest_below(requested - 1, 0)
    if name == "gpu_memory_utilization":
        if not arithmetic.starts(candidate(ctx, base_tier(ctx, tier), ctx.overrides).memory):
            # Too much to be free at start-up: the nearest fit lies below.
            return lower_utilization(ctx, tier, requested)
        step = math.floor(round(requested / _UTILIZATION_STEP, 6)) + 1
        while step * _UTILIZATION_STEP <= 1 + 1e-9:
            value = round(step * _UTILIZATION_STEP, 2)
            if has_plan(value):
                return value
            step += 1
        return None
    if name == "kv_cache_dtype":
        return "fp8" if requested == "auto" and has_plan("fp8") else None
    return None


def shortfall_text(ctx: Context, settings: VllmSettings) -> str:
    weakest = ctx.hardware.weakest
    memory = arithmetic.estimate(weakest, ctx.spec, settings, ctx.memory_model, ctx.vllm_version)
    if weakest.memory_free_bytes is not None and not arithmetic.starts(memory):
        # A measured GPU in use: vLLM refuses unless utilization x total is free at start-up.
        return f"{free_text(ctx, weakest, memory, settings)}: stop what holds the rest"
    need = arithmetic.required_gpu_memory_bytes(ctx.spec, settings, ctx.memory_model, ctx.vllm_version)
    have = weakest.memory_total_bytes
    return f"needs {gb_text(need)} per GPU, {weakest.name} has {gb_text(have)}: short by {gb_text(max(0, need - have))}"


def base_tier(ctx: Context, forced: TierProfile | None) -> TierProfile:
    """The tier the overrides are judged on: the forced one, else the one chosen without them."""
    if forced is not None:
        return forced
    base = try_select(ctx.without_overrides(), None)
    return base.candidate.tier if base is not None else min(ctx.tiers, key=lambda t: t.rank)


def refuse_overrides(ctx: Context, forced: TierProfile | None, base: Choice) -> InfeasibleError:
    """The hardware serves without the user's values, not with them: say by how much, and what would fit."""
    tier = base.candidate.tier
    option = candidate(ctx, tier, ctx.overrides, base.candidate.relief)
    settings = option.settings
    nearest = []
    for name in ctx.overrides.given():
        value = nearest_value(ctx, forced, name)
        flag = OPTION_FLAGS[name]
        nearest.append(f"{flag} {value}" if value is not None else f"no {flag} fits with the other values")
    context = count_text(settings.max_model_len)
    fix = f"nearest values that fit: {'; '.join(nearest)}; or leave the option out and let the planner choose"
    memory = option.memory
    if not arithmetic.starts(memory) and memory.start_free_bytes is not None:
        return InfeasibleError(
            f"{ctx.overrides.flags()} does not fit on {ctx.hardware.label()} with profile {tier.name}: vLLM would "
            f"ask for {gib_text(memory.budget_bytes + memory.cuda_graph_headroom_bytes)} of the "
            f"{gib_text(memory.gpu_memory_bytes)} CUDA reports, but only {gib_text(memory.start_free_bytes)} is free "
            "after the CUDA context, and it refuses to start",
            fix=fix,
        )
    return InfeasibleError(
        f"{ctx.overrides.flags()} does not fit on {ctx.hardware.label()} with profile {tier.name}: the KV cache holds "
        f"{count_text(option.memory.kv_tokens)} tokens, one {context}-token sequence needs "
        f"{context}; {shortfall_text(ctx, settings)}",
        fix=fix,
    )


def refuse_tier(ctx: Context, tier: TierProfile) -> InfeasibleError:
    if ctx.hardware.count < tier.gpu_count:
        return InfeasibleError(
            f"profile {tier.name} needs {tier.gpu_count} GPUs; the inventory has {ctx.hardware.count} "
            f"({ctx.hardware.label()})",
            fix="plan for more GPUs (--gpu NAME:COUNT), or leave --profile out to let the planner choose",
        )
    option = candidate(ctx, tier, ctx.overrides)
    settings = option.settings
    best = best_choice(ctx)
    hint = f"--profile {best.candidate.tier.name} fits" if best is not None else "no profile fits this hardware"
    return InfeasibleError(
        f"profile {tier.name} ({count_text(settings.max_model_len)}-token context, {settings.images_per_prompt} "
        f"image(s) per prompt, gpu_memory_utilization {settings.gpu_memory_utilization:g}) does not fit on "
        f"{ctx.hardware.label()}: {shortfall_text(ctx, settings)} (its documented minimum is "
        f"{tier.min_memory_gb_per_gpu:g} GB per GPU)",
        fix=f"{hint}; or lower --max-model-len (the KV cache holds {count_text(option.memory.kv_tokens)} tokens)",
    )


def refuse_replicas(ctx: Context, replicas: int, tiers: tuple[TierProfile, ...]) -> InfeasibleError:
    """`--replicas N` gives each replica its own GPUs: fewer GPUs than N replicas of the smallest of
    `tiers` (the forced one, or every tier) need."""
    smallest = min(tiers, key=lambda t: t.gpu_count)
    have = ctx.hardware.count
    each = f"{smallest.gpu_count} GPU{'s' if smallest.gpu_count > 1 else ''}"
    most = have // smallest.gpu_count
    fix = "plan for more GPUs (--gpu NAME:COUNT)"
    if most:
        fewer = f"--replicas {most}" if most == 1 else f"--replicas {most} or fewer"
        fix = f"use {fewer}, or {fix}"
    return InfeasibleError(
        f"--replicas {replicas}: each replica gets its own GPUs, {replicas} replicas of {smallest.name} ({each} each) "
        f"need {replicas * smallest.gpu_count}; the inventory has {have} ({ctx.hardware.label()})",
        fix=fix,
    )


def refuse_hardware(ctx: Context) -> InfeasibleError:
    """Nothing serves: state the shortfall of the smallest plan, in GB."""
    base = ctx.without_overrides()
    reduced_plan = ctx.memory_model.reduced_plan
    most_relief = reduced_plan.relief_steps[-1] if reduced_plan.relief_steps else None
    smallest: tuple[int, str] | None = None
    for tier in ctx.tiers:
        if ctx.hardware.count < tier.gpu_count:
            continue
        floor = min(tier.vllm.max_model_len, reduced_plan.min_max_model_len)
        settings = candidate(base, tier, base.overrides, most_relief, max_model_len=floor).settings
        need = arithmetic.required_gpu_memory_bytes(ctx.spec, settings, ctx.memory_model, ctx.vllm_version)
        described = (
            f"{tier.name}, {count_text(settings.max_model_len)}-token context, {settings.images_per_prompt} image(s) "
            f"per prompt, CUDA graphs {'off' if settings.enforce_eager else 'on'}, "
            f"gpu_memory_utilization {settings.gpu_memory_utilization:g}"
        )
        if smallest is None or need < smallest[0]:
            smallest = (need, f"the smallest plan ({described}) {shortfall_text(ctx, settings)}")
    if smallest is None:
        counts = sorted({t.gpu_count for t in ctx.tiers})
        return InfeasibleError(
            f"no profile runs on {ctx.hardware.count} GPU(s): profiles need {counts}", fix="plan for more GPUs"
        )
    light = min(ctx.tiers, key=lambda t: t.rank)
    alternatives = f"a GPU with at least {light.min_memory_gb_per_gpu:g} GB ({light.name}: {', '.join(light.examples)})"
    multi = [t for t in ctx.tiers if t.gpu_count > 1]
    if multi:
        alternatives += (
            f", or {multi[0].gpu_count} GPUs of at least {multi[0].min_memory_gb_per_gpu:g} GB for {multi[0].name}"
        )
    return InfeasibleError(
        f"{ctx.spec.name} cannot be served on {ctx.hardware.label()}: {smallest[1]}",
        fix=f"use {alternatives}; {GPUS_LIST_HINT}",
    )
