"""Why no plan: the shortfall in GB, and the nearest values that would fit.

Each function builds the InfeasibleError (or UsageError) the planner raises; `select` decides
which one applies when the search finds nothing.
"""

from __future__ import annotations

import math

from r4b_deploy.errors import InfeasibleError, UsageError
from r4b_deploy.planning import memory as arithmetic
from r4b_deploy.planning.plan import VllmSettings
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
        return choice
    if tier is not None and ctx.hardware.count < tier.gpu_count:
        raise refuse_tier(ctx, tier)
    if ctx.overrides.given():
        base = try_select(ctx.without_overrides(), tier)
        if base is not None:
            raise refuse_overrides(ctx, tier, base)
    if tier is not None:
        raise refuse_tier(ctx, tier)
    raise refuse_hardware(ctx)


def nearest_value(ctx: Context, tier: TierProfile | None, name: str) -> object | None:
    """The value of one overridden option nearest to the user's with which a plan exists, the others kept."""
    requested = getattr(ctx.overrides, name)

    def has_plan(value: object) -> bool:
        return try_select(ctx.with_override(name, value), tier) is not None

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
    if name == "max_num_seqs":
        return largest_below(requested - 1, 1)
    if name == "images_per_prompt":
        return largest_below(requested - 1, 0)
    if name == "gpu_memory_utilization":
        if not arithmetic.starts(candidate(ctx, base_tier(ctx, tier), ctx.overrides).memory):
            # Too much to be free at start-up: the nearest fit lies below.
            step = math.ceil(round(requested / _UTILIZATION_STEP, 6)) - 1
            while step > 0:
                value = round(step * _UTILIZATION_STEP, 2)
                if has_plan(value):
                    return value
                step -= 1
            return None
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
        need_free = memory.budget_bytes + memory.cuda_graph_headroom_bytes
        return (
            f"vLLM needs {gb_text(need_free)} free at start-up ({settings.gpu_memory_utilization:g} × "
            f"{gb_text(memory.gpu_memory_bytes)}), {weakest.name} {weakest.index} has "
            f"{gb_text(weakest.memory_free_bytes)} free: stop what holds the rest"
        )
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
        f"R-4B cannot be served on {ctx.hardware.label()}: {smallest[1]}", fix=f"use {alternatives}; {GPUS_LIST_HINT}"
    )
