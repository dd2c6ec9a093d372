"""What the plan says about itself: every tier as judged on this hardware, whether replicas would
serve more, why these settings, what to watch out for, and what more memory would buy.

Text only, from the search's own candidates: nothing here changes the choice.
"""

from __future__ import annotations

from r4b_deploy.hardware.inventory import BYTES_PER_GB, compute_capability_tuple
from r4b_deploy.planning import memory as arithmetic
from r4b_deploy.planning.plan import ReplicaAdvice, TierFit
from r4b_deploy.planning.search import Choice, Context, best_choice, candidate, tier_settings
from r4b_deploy.planning.text import count_text, gb_text, gib_text

# Per decoder layer, tensor parallelism all-reduces twice (after attention and after the MLP).
ALL_REDUCES_PER_LAYER = 2


def tier_fits(ctx: Context, chosen: Choice, replica_count: int = 1) -> list[TierFit]:
    """Each tier on this hardware, the chosen one marked (with the replicas that run it): the table `plan` prints."""
    hardware = ctx.hardware
    out = []
    for tier in ctx.tiers:
        is_chosen = tier.name == chosen.candidate.tier.name
        meets = hardware.meets_minimum(tier)
        if hardware.count < tier.gpu_count:
            option, fits = None, False
            note = f"needs {tier.gpu_count} GPUs, has {hardware.count}"
        else:
            # `fits` judges the tier's own settings, even where the chosen plan is a reduced one.
            own = candidate(ctx, tier, ctx.overrides)
            option = chosen.candidate if is_chosen else own
            fits = own.fits
            memory = option.memory
            holds = f"{memory.max_concurrency:g} full {count_text(option.settings.max_model_len)}-token sequences"
            if not meets:
                note = (
                    f"below the documented minimum {tier.min_memory_gb_per_gpu:g} GB per GPU "
                    f"({hardware.weakest.name}: {gb_text(hardware.weakest.memory_total_bytes)})"
                )
                if fits and not is_chosen:
                    note += f"; the arithmetic alone would hold {holds}"
            elif not fits:
                context = count_text(option.settings.max_model_len)
                note = f"KV cache holds {count_text(memory.kv_tokens)} tokens, under its {context}-token context"
            else:
                note = f"fits: {holds}"
                if not is_chosen and tier.rank < chosen.candidate.tier.rank:
                    note += f"; {chosen.candidate.tier.name} ranks higher"
            if is_chosen:
                label = "chosen with --profile" if chosen.forced else "chosen"
                label += f" × {replica_count} replicas" if replica_count > 1 else ""
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
                max_model_len=option.settings.max_model_len
                if option
                else tier_settings(ctx, tier, ctx.overrides).max_model_len,
                kv_tokens=option.memory.kv_tokens if option else 0,
                max_concurrency=option.memory.max_concurrency if option else 0.0,
                note=note,
            )
        )
    return out


def single_gpu_choice(ctx: Context, chosen: Choice) -> Choice | None:
    """What one replica per GPU would run: a single-GPU plan is its own replica; for a
    tensor-parallel plan, the best single-GPU tier (None when no tier runs on one GPU)."""
    if chosen.candidate.tier.gpu_count == 1:
        return chosen
    single_gpu_tiers = tuple(t for t in ctx.tiers if t.gpu_count == 1)
    return best_choice(ctx, single_gpu_tiers) if single_gpu_tiers else None


def replica_advice(
    ctx: Context, chosen: Choice, *, runs_replicas: bool = False, one_engine_flag: str | None = None
) -> ReplicaAdvice | None:
    """With more GPUs than the one-engine plan `chosen` uses, or tensor parallelism: would one
    replica per GPU serve more? `runs_replicas`: the plan took the advice (the summary says so, and
    how to force one engine); `one_engine_flag`: the option that kept one engine ("--profile tp8")."""
    tier = chosen.candidate.tier
    used = tier.gpu_count
    gpu_count = ctx.hardware.count
    if gpu_count <= used and tier.tensor_parallel_size == 1:
        return None
    replica = single_gpu_choice(ctx, chosen)
    plan = chosen.candidate
    plan_kv, plan_concurrency = plan.memory.kv_tokens, plan.memory.max_concurrency
    plan_slots = plan.settings.max_num_seqs
    if replica is None:
        return ReplicaAdvice(
            gpus_available=gpu_count,
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
            plan_concurrency=plan_concurrency,
            plan_seq_slots=plan_slots,
            prefer_replicas=False,
            summary=f"One {ctx.hardware.weakest.name} cannot hold {ctx.spec.name} on its own: "
            "tensor parallelism is needed here.",
        )
    one = replica.candidate
    total_kv = gpu_count * one.memory.kv_tokens
    total_concurrency = round(gpu_count * one.memory.max_concurrency, 2)
    total_slots = gpu_count * one.settings.max_num_seqs
    one_context = count_text(one.settings.max_model_len)
    get = _how_to_run_replicas(one_engine_flag, gpu_count, single_gpu_plan=tier.gpu_count == 1)
    holds = (
        f"{count_text(total_kv)} KV tokens, {total_concurrency:g} full {one_context}-token sequences and "
        f"{count_text(total_slots)} batch slots in all"
    )
    if tier.gpu_count == 1 and runs_replicas:
        summary = (
            f"{gpu_count} data-parallel replicas of {one.tier.name}, one per GPU behind vLLM's router, hold "
            f"{holds}: {gpu_count}× one engine, so the plan runs them (--replicas 1 keeps one engine)."
        )
        prefer = True
    elif tier.gpu_count == 1:
        summary = (
            f"The plan uses {used} of {gpu_count} GPUs: {gpu_count} data-parallel replicas of {one.tier.name} "
            f"(one per GPU, behind vLLM's router) would hold {holds}: {gpu_count}× this plan; {get}."
        )
        prefer = True
    else:
        all_reduces = ctx.spec.language_model.num_hidden_layers * ALL_REDUCES_PER_LAYER
        prefer = not replica.reduced
        plan_context = count_text(plan.settings.max_model_len)
        if not prefer:
            tail = f"but one GPU holds only a reduced {one.tier.name} plan: {tier.name} is the safer choice."
        elif runs_replicas:
            tail = (
                f"replicas usually serve far more: the plan runs them behind vLLM's router (--replicas 1 or "
                f"--profile {tier.name} forces one engine, for single requests that need the {plan_context}-token "
                "context)."
            )
        else:
            tail = (
                f"replicas usually serve far more: {get}, unless single requests need the {plan_context}-token context."
            )
        summary = (
            f"{gpu_count} data-parallel replicas of {one.tier.name} ({one_context}-token context, one per GPU) "
            f"would hold {total_concurrency:g} full sequences and {count_text(total_slots)} batch slots in all "
            f"({count_text(total_kv)} KV tokens), against {tier.name}'s {plan_concurrency:g} full "
            f"{plan_context}-token sequences and {count_text(plan_slots)} slots "
            f"({count_text(plan_kv)} KV tokens); each replica also skips {tier.name}'s {all_reduces} all-reduces "
            "per forward step, so " + tail
        )
    return ReplicaAdvice(
        gpus_available=gpu_count,
        gpus_used=used,
        replica_profile=one.tier.name,
        replicas=gpu_count,
        replica_max_model_len=one.settings.max_model_len,
        replica_kv_tokens=one.memory.kv_tokens,
        replica_max_num_seqs=one.settings.max_num_seqs,
        replicas_total_kv_tokens=total_kv,
        replicas_total_concurrency=total_concurrency,
        replicas_total_seq_slots=total_slots,
        plan_kv_tokens=plan_kv,
        plan_concurrency=plan_concurrency,
        plan_seq_slots=plan_slots,
        prefer_replicas=prefer,
        summary=summary,
    )


def _how_to_run_replicas(one_engine_flag: str | None, gpu_count: int, *, single_gpu_plan: bool) -> str:
    """What the user changes to get the replicas the advice describes, given what kept one engine."""
    if one_engine_flag is None:
        return f"--replicas {gpu_count} runs them"
    if one_engine_flag.startswith("--replicas"):
        return f"{one_engine_flag} keeps one engine; leave it out (auto) and the plan runs them"
    if single_gpu_plan:
        return f"add --replicas {gpu_count} to run them"
    return f"drop {one_engine_flag} and the plan runs them"


def replica_reason(
    choice: Choice, count: int, gpu_groups: list[list[int]], how: str, advice: ReplicaAdvice | None
) -> str:
    """Why this plan runs `count` engines, what they hold together, and which GPUs each one gets."""
    one = choice.candidate
    memory, settings = one.memory, one.settings
    total_concurrency = round(count * memory.max_concurrency, 2)
    against = ""
    if advice is not None and advice.gpus_used > 1:
        against = (
            f"; one engine over {advice.gpus_used} GPUs would hold {count_text(advice.plan_kv_tokens)} KV tokens "
            f"and {count_text(advice.plan_seq_slots)} slots"
        )
    groups = ", ".join(
        f"replica {i} on GPU{'s' if len(group) > 1 else ''} {','.join(map(str, group))}"
        for i, group in enumerate(gpu_groups)
    )
    return (
        f"{count} replicas × {one.tier.name} behind vLLM's router ({how}): {count_text(count * memory.kv_tokens)} "
        f"KV tokens, {total_concurrency:g} full {count_text(settings.max_model_len)}-token sequences and "
        f"{count_text(count * settings.max_num_seqs)} batch slots in all, {count}× one engine's "
        f"{count_text(memory.kv_tokens)} KV tokens and {count_text(settings.max_num_seqs)} slots{against}. "
        f"Each replica has its own GPUs: {groups}."
    )


def reasons(
    ctx: Context, chosen: Choice, tiers: list[TierFit], advice: ReplicaAdvice | None, replica_count: int = 1
) -> list[str]:
    """Why this tier and these settings, down to the memory arithmetic's own terms. With replicas,
    `chosen` is one replica's tier: the highest that one replica's GPUs hold, not the host's."""
    settings, memory, tier = chosen.candidate.settings, chosen.candidate.memory, chosen.candidate.tier
    hardware = ctx.hardware
    batching = ctx.memory_model.default_batching
    out = [f"Hardware: {hardware.label()} (inventory from {hardware.inventory.source})."]
    out += [f"Inventory: {note}" for note in hardware.inventory.notes]
    if chosen.forced:
        how = "forced with --profile"
    elif chosen.reduced and not hardware.meets_minimum(tier):
        how = "below every tier's documented minimum, so the lowest tier that still serves, reduced to fit"
    elif chosen.reduced:
        how = "no tier holds its settings as asked, so the lowest tier that serves, reduced to fit"
    else:
        holder = "one replica's GPUs hold" if replica_count > 1 else "this hardware holds"
        how = (
            f"the highest tier {holder} ({tier.gpu_count}× ≥ {tier.min_memory_gb_per_gpu:g} GB documented "
            f"minimum, and the arithmetic holds its {count_text(settings.max_model_len)}-token context)"
        )
    out.append(f"Profile {tier.name}: {how}. {tier.description}")
    out += [f"Profile {t.name}: {t.note}." for t in tiers if not t.chosen]
    min_bf16 = ctx.spec.min_compute_capability_bf16
    lowest = ".".join(map(str, hardware.lowest_compute_capability))
    relation = "≥" if settings.dtype == "bfloat16" else "<"
    out.append(
        f"dtype {settings.dtype}: compute capability {lowest} {relation} {min_bf16} (bf16 needs Ampere or newer)."
    )
    default = arithmetic.vllm_default_batching(hardware.weakest, ctx.memory_model)
    if ctx.overrides.max_num_batched_tokens is not None:
        source = "set with --max-num-batched-tokens"
    elif tier.vllm.max_num_batched_tokens is not None:
        source = "set by the tier"
    elif settings.max_num_batched_tokens > default.max_num_batched_tokens:
        source = f"raised from vLLM's default {default.max_num_batched_tokens} to max_num_seqs (vLLM requires it)"
    else:
        source = "vLLM's default for " + (
            f"GPUs with ≥ {batching.large_gpu_min_memory_gib:g} GiB (not A100)"
            if default == batching.large
            else f"GPUs under {batching.large_gpu_min_memory_gib:g} GiB or A100s"
        )
    out.append(f"max_num_batched_tokens {settings.max_num_batched_tokens}: {source}.")
    if settings.enforce_eager:
        graphs = "CUDA graphs off (--enforce-eager)"
    elif memory.cuda_graph_headroom_bytes:
        graphs = f"CUDA graphs 0 (their {gib_text(memory.cuda_graph_headroom_bytes)} is captured above the budget)"
    else:
        graphs = f"CUDA graphs {gib_text(memory.cuda_graph_bytes)}"
    out.append(
        f"Per GPU: budget {gib_text(memory.budget_bytes)} ({settings.gpu_memory_utilization:g} × "
        f"{gib_text(memory.gpu_memory_bytes)} CUDA reports) − weights {gib_text(memory.weights_bytes)} − activations "
        f"{gib_text(memory.activation_bytes)} − vision encoder {gib_text(memory.vision_encoder_bytes)} "
        f"(one worst-case image: vLLM profiles one) − non-torch {gib_text(memory.non_torch_bytes)} − "
        f"{graphs} = KV cache {gib_text(memory.kv_cache_bytes)} → {count_text(memory.kv_tokens)} tokens at "
        f"{count_text(memory.kv_bytes_per_token)} B/token in {ctx.memory_model.kv_block_size_tokens}-token blocks → "
        f"max concurrency {memory.max_concurrency:g} full {count_text(settings.max_model_len)}-token sequences."
    )
    if advice is not None:
        out.append(advice.summary)
    return out


def warnings(ctx: Context, chosen: Choice) -> list[str]:
    """What could still go wrong with this plan on this hardware (a GPU too busy for vLLM to start
    on is no warning: `refusals.select` refuses the plan)."""
    settings, tier = chosen.candidate.settings, chosen.candidate.tier
    hardware = ctx.hardware
    thresholds = ctx.memory_model.warnings
    out: list[str] = []
    if hardware.mixed:
        weakest = hardware.weakest
        out.append(
            f"Mixed GPUs: planned for the weakest, GPU {weakest.index} {weakest.name} "
            f"({gb_text(weakest.memory_total_bytes)}, compute {weakest.compute_capability}); the larger GPUs leave "
            "memory unused."
        )
    for gpu in hardware.gpus:
        if gpu.mig_enabled:
            out.append(
                f"GPU {gpu.index} ({gpu.name}) has MIG enabled: vLLM runs on one MIG instance, not the whole GPU, and "
                "this plan assumes the whole GPU's memory; disable MIG or plan for the instance's memory (--inventory)."
            )
    if settings.dtype == "float16":
        out.append(
            f"float16, not bfloat16: compute capability below {ctx.spec.min_compute_capability_bf16} has no bf16; "
            f"{ctx.spec.name} was trained in bf16, so rare float16 overflows are possible."
        )
    if not hardware.meets_minimum(tier):
        out.append(
            f"{hardware.weakest.name} ({gb_text(hardware.weakest.memory_total_bytes)}) is below profile {tier.name}'s "
            f"documented minimum of {tier.min_memory_gb_per_gpu:g} GB per GPU: the plan works by the arithmetic, "
            "with little headroom."
        )
    target = tier_settings(ctx, tier, ctx.overrides)
    if settings.max_model_len < target.max_model_len:
        out.append(
            f"Reduced: max_model_len {count_text(settings.max_model_len)} instead of profile {tier.name}'s "
            f"{count_text(target.max_model_len)} (the KV cache holds {count_text(chosen.candidate.memory.kv_tokens)} "
            "tokens)."
        )
    if settings.enforce_eager and not target.enforce_eager:
        out.append("Reduced: CUDA graphs off (--enforce-eager) to free their memory; decoding is slower.")
    if settings.gpu_memory_utilization > target.gpu_memory_utilization:
        out.append(
            f"Reduced: gpu_memory_utilization {settings.gpu_memory_utilization:g} instead of "
            f"{target.gpu_memory_utilization:g}; other processes on the GPU leave less room."
        )
    vision = ctx.spec.vision
    image_tokens = settings.images_per_prompt * vision.max_image_tokens if vision else 0
    if vision and settings.images_per_prompt and image_tokens >= settings.max_model_len:
        out.append(
            f"{settings.images_per_prompt} worst-case image(s) ({count_text(image_tokens)} tokens) do not fit "
            f"max_model_len {count_text(settings.max_model_len)}: vLLM rejects such requests; smaller images cost "
            f"fewer tokens (a one-tile image ≈ {count_text(vision.one_tile_image_tokens)})."
        )
    fp8_native = thresholds.fp8_kv_native_min_compute_capability
    if settings.kv_cache_dtype == "fp8" and hardware.lowest_compute_capability < compute_capability_tuple(fp8_native):
        out.append(
            f"--kv-cache-dtype fp8 below compute capability {fp8_native} has no FP8 hardware: vLLM converts in "
            "software or picks another attention backend; check the startup log."
        )
    if settings.gpu_memory_utilization > thresholds.high_gpu_memory_utilization:
        out.append(
            f"gpu_memory_utilization {settings.gpu_memory_utilization:g} leaves little headroom for fragmentation "
            "and anything else on the GPU."
        )
    if (
        settings.tensor_parallel_size > 1
        and hardware.inventory.source == "nvml"
        and not hardware.inventory.nvlink_pairs
    ):
        out.append(
            f"No NVLink measured between the GPUs: tensor parallelism {settings.tensor_parallel_size} all-reduces "
            "over PCIe."
        )
    return out


def upgrades(ctx: Context, chosen: Choice) -> list[str]:
    """What more memory per GPU, a higher tier or an FP8 KV cache would buy."""
    current = chosen.candidate
    tier, settings = current.tier, current.settings
    hardware = ctx.hardware
    out: list[str] = []
    have = hardware.weakest.memory_total_bytes
    for target_gb, label in (
        (tier.min_memory_gb_per_gpu, "documented minimum"),
        (tier.recommended_memory_gb_per_gpu, "recommended"),
    ):
        if have >= target_gb * BYTES_PER_GB:
            continue
        bigger = hardware.weakest.model_copy(update={"memory_total_bytes": int(target_gb * BYTES_PER_GB)})
        full = candidate(ctx, tier, ctx.overrides, gpu=bigger)
        if full.fits:
            out.append(
                f"{tier.name} at its {label} {target_gb:g} GB per GPU: its full settings "
                f"({count_text(full.settings.max_model_len)}-token context, CUDA graphs on) and a KV cache of "
                f"{count_text(full.memory.kv_tokens)} tokens ({full.memory.max_concurrency:g} full sequences), "
                f"against {count_text(current.memory.kv_tokens)} now."
            )
            break
    for higher in ctx.tiers:
        if higher.rank <= tier.rank or (hardware.meets_minimum(higher) and candidate(ctx, higher, ctx.overrides).fits):
            continue
        targets = higher.vllm
        examples = f" (e.g. {', '.join(higher.examples)})" if higher.examples else ""
        out.append(
            f"{higher.name}: {higher.gpu_count}× ≥ {higher.min_memory_gb_per_gpu:g} GB per GPU{examples} buys "
            f"a {count_text(targets.max_model_len)}-token context, {targets.images_per_prompt} images per prompt and "
            f"{targets.max_num_seqs} concurrent sequences: {higher.description}"
        )
    fp8_native = compute_capability_tuple(ctx.memory_model.warnings.fp8_kv_native_min_compute_capability)
    if settings.kv_cache_dtype == "auto" and hardware.lowest_compute_capability >= fp8_native:
        with_fp8 = ctx.with_override("kv_cache_dtype", "fp8")
        fp8 = candidate(with_fp8, tier, with_fp8.overrides, current.relief, max_model_len=settings.max_model_len)
        out.append(
            f"--kv-cache-dtype fp8 halves the KV bytes per token: {count_text(fp8.memory.kv_tokens)} tokens "
            f"({fp8.memory.max_concurrency:g} full sequences) on the same GPU, at a small accuracy cost."
        )
    return out
