"""The planner: inventory + model spec + tiers + memory model -> one frozen Plan.

The model is R-4B (profiles/model.yaml) unless the request names another (`--model`: a spec in
profiles/models, or a folder read by `r4b_deploy.model_files`); the tiers, written for R-4B,
are fitted to it (its context, whether it takes images, which tensor-parallel sizes divide its heads).

Selection: the highest tier (light < medium < heavy < tp8) whose documented minimum the GPUs
meet and whose settings the memory arithmetic holds. Below every minimum, the lowest tier that
still serves, with its context shrunk and memory relieved step by step (a "reduced" plan).
A plan never carries settings vLLM would refuse: one full max_model_len sequence fits the KV
cache, tensor parallelism divides the heads, bf16 only where the GPU has it.

Replicas (issue 10): `--replicas auto` (None) keeps one engine unless the replica advice prefers one
engine per GPU and nothing forces one (--profile, --tensor-parallel-size); then the plan is that
many copies of the best single-GPU tier, each on its own GPU, behind vLLM's router. `--replicas N`
takes the highest tier of which N copies fit the GPUs. `Plan.vllm` and `Plan.memory` are always one
replica's; `Plan.replica_count` says how many run.

The parts: `search` (candidates and the choice), `refusals` (why not, and the nearest values
that fit), `explain` (reasons, warnings, upgrades, replica advice), `rehearsal` (the CPU plan).
"""

from __future__ import annotations

from dataclasses import replace

from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import Inventory
from r4b_deploy.hardware.resolve import resolve_inventory
from r4b_deploy.planning import explain
from r4b_deploy.planning.coefficients import memory_model
from r4b_deploy.planning.memory import min_max_model_len
from r4b_deploy.planning.plan import Plan, PlanRequest, ReplicaAdvice, gpu_groups
from r4b_deploy.planning.profiles import REHEARSAL_TIER_NAME, TierProfile, load_tiers
from r4b_deploy.planning.refusals import busy_gpus, refuse_busy, refuse_replicas, select
from r4b_deploy.planning.search import Choice, Context, Overrides, planned_hardware
from r4b_deploy.spec import ModelSpec, model_spec, resolve_model


def make_plan(req: PlanRequest, inventory: Inventory | None = None) -> Plan:
    """Plan the model `req` names (default R-4B) on `inventory` (default: the one `req` names,
    else the GPUs NVML measures)."""
    rehearsal = req.rehearsal or req.profile == REHEARSAL_TIER_NAME
    if rehearsal:
        _check_context_bounds(req, rehearsal, model_spec())
        from r4b_deploy.planning.rehearsal import rehearsal_plan

        return _with_cpu_release(rehearsal_plan(req), req)
    spec = resolve_model(req.model)
    if req.revision is not None and spec.model_id.startswith("/"):
        raise UsageError(
            f"--revision {req.revision}: the model is the folder {spec.model_id}, served as it is",
            fix="drop --revision, or check the revision out into the folder",
        )
    _check_context_bounds(req, rehearsal, spec)
    if inventory is None:
        inventory = resolve_inventory(gpu=req.gpu, inventory_file=req.inventory_file)
    from r4b_deploy.pins import choose_gpu_pins

    # The release first: it decides the memory coefficients (profiles/memory.yaml) the search uses.
    choice = choose_gpu_pins(inventory.driver_version, req.vllm_version)
    _check_release(spec, choice.pins.vllm_version)
    plan = _gpu_plan(req, inventory, choice.pins.vllm_version, spec)
    return plan.model_copy(
        update={
            "vllm_version": choice.pins.vllm_version,
            "vllm": plan.vllm.model_copy(update={"revision": req.revision}),
            "reasons": [*plan.reasons, choice.reason],
            "warnings": [*plan.warnings, *([choice.warning] if choice.warning else [])],
        }
    )


def _with_cpu_release(plan: Plan, req: PlanRequest) -> Plan:
    """The rehearsal installs vLLM's CPU build (profiles/vllm.yaml rehearsal) and serves a tiny model
    built into the image: --vllm-version, --revision and --model do not apply to it."""
    from r4b_deploy.pins import gpu_versions, rehearsal_profile

    given = (
        ("--vllm-version", req.vllm_version),
        ("--revision", req.revision),
        ("--model", req.model),
        ("--tensor-parallel-size", req.tensor_parallel_size),
        ("--max-num-batched-tokens", req.max_num_batched_tokens),
    )
    for flag, value in given:
        if value is not None:
            raise UsageError(
                f"{flag} applies to GPU images; the CPU rehearsal installs vLLM's CPU build and serves a "
                "tiny model built into the image",
                fix=f"drop {flag} (the rehearsal's pins are profiles/vllm.yaml rehearsal), or drop --rehearsal",
            )
    cpu = rehearsal_profile()
    same = cpu.vllm_version in gpu_versions()
    reason = f"vLLM {cpu.vllm_version}: the CPU build ({cpu.vllm_package}); " + (
        f"GPU hosts get the same release with --vllm-version {cpu.vllm_version}"
        if same
        else "no GPU release of that version is pinned (profiles/vllm.yaml gpu.releases)"
    )
    return plan.model_copy(update={"vllm_version": cpu.vllm_version, "reasons": [*plan.reasons, reason]})


def _check_context_bounds(req: PlanRequest, rehearsal: bool, spec: ModelSpec) -> None:
    """Values no context can serve are the user's to correct (exit 4), before any arithmetic."""
    if spec.vision is None and req.images_per_prompt:
        raise UsageError(
            f"--images-per-prompt {req.images_per_prompt}: {spec.name} is a text-only model",
            fix="drop --images-per-prompt (or give 0)",
        )
    if spec.vision is not None:
        one_tile = spec.vision.one_tile_image_tokens
        most_images = spec.language_model.max_position_embeddings // one_tile
        if req.images_per_prompt is not None and req.images_per_prompt > most_images:
            raise UsageError(
                f"--images-per-prompt {req.images_per_prompt}: at most {most_images} (one-tile images of "
                f"{one_tile:,} tokens each fill {spec.name}'s "
                f"{spec.language_model.max_position_embeddings:,}-token context)",
                fix=f"use --images-per-prompt {most_images} or fewer",
            )
    batched, seqs = req.max_num_batched_tokens, req.max_num_seqs
    if batched is not None and seqs is not None and seqs > batched:
        raise UsageError(
            f"--max-num-seqs {seqs} exceeds --max-num-batched-tokens {batched}: vLLM refuses more sequences "
            "than tokens per step",
            fix=f"use --max-num-batched-tokens {seqs} or more, or --max-num-seqs {batched} or fewer",
        )
    if req.max_model_len is None:
        return
    # The rehearsal's tiny model has 32-px images: only the block applies.
    coefficients = memory_model()
    floor = min_max_model_len(spec, coefficients, 0 if rehearsal else req.images_per_prompt)
    if req.max_model_len >= floor:
        return
    block = coefficients.kv_block_size_tokens
    if floor == block:
        why = f"one {block}-token KV block"
        fix = f"use --max-model-len {floor} or more"
    else:
        why = f"a one-tile image's {floor - block:,}-token prompt and one {block}-token KV block"
        fix = f"use --max-model-len {floor} or more, or --images-per-prompt 0 for text only"
    raise UsageError(f"--max-model-len {req.max_model_len}: a request needs at least {floor:,} tokens ({why})", fix=fix)


def _check_release(spec: ModelSpec, vllm_version: str) -> None:
    from r4b_deploy.pins import version_tuple

    if version_tuple(vllm_version) < version_tuple(spec.min_vllm_version):
        raise UsageError(
            f"{spec.name} needs vLLM {spec.min_vllm_version} or later; the plan's release is {vllm_version}",
            fix="pick a newer release with --vllm-version (profiles/vllm.yaml gpu.releases), or update the driver",
        )


def model_tiers(tiers: tuple[TierProfile, ...], spec: ModelSpec, tensor_parallel_size: int | None) -> tuple:
    """The tiers fitted to `spec`: its context bounds theirs, a text-only model takes no images,
    the images that leave no room for text are dropped, and a tensor-parallel size that does not
    divide its heads leaves the tier out. `tensor_parallel_size` puts every single-GPU tier on that
    many GPUs and keeps a tensor-parallel tier only at its own size (tp8 is 8)."""
    lm = spec.language_model
    out = []
    for tier in tiers:
        if tensor_parallel_size and tier.tensor_parallel_size not in (1, tensor_parallel_size):
            continue
        tp = tensor_parallel_size or tier.tensor_parallel_size
        kv_split = lm.num_key_value_heads % tp == 0 or tp % lm.num_key_value_heads == 0  # else vLLM refuses
        if lm.num_attention_heads % tp or not kv_split:
            continue
        targets = tier.vllm
        length = min(targets.max_model_len, lm.max_position_embeddings)
        images = targets.images_per_prompt if spec.vision is not None else 0
        while images and spec.vision is not None and images * spec.vision.max_image_tokens >= length:
            images -= 1
        vllm = targets.model_copy(update={"max_model_len": length, "images_per_prompt": images})
        gpus = {"tensor_parallel_size": tp, "gpu_count": tp} if tensor_parallel_size else {}
        out.append(tier.model_copy(update={"vllm": vllm, **gpus}))
    if not out:
        raise UsageError(
            f"no tier fits {spec.name}'s {lm.num_attention_heads} attention and {lm.num_key_value_heads} KV heads "
            f"at tensor parallelism {tensor_parallel_size}",
            fix="use a --tensor-parallel-size that divides them",
        )
    return tuple(out)


def _gpu_plan(req: PlanRequest, inventory: Inventory, vllm_version: str, spec: ModelSpec) -> Plan:
    limit = spec.language_model.max_position_embeddings
    ctx = Context(
        spec=spec,
        memory_model=memory_model(),
        tiers=model_tiers(load_tiers(), spec, req.tensor_parallel_size),
        hardware=planned_hardware(inventory, spec),
        overrides=Overrides.from_request(req),
        vllm_version=vllm_version,
    )
    if req.max_model_len is not None and req.max_model_len > limit:
        raise UsageError(
            f"--max-model-len {req.max_model_len} exceeds {spec.name}'s max_position_embeddings {limit}",
            fix=f"use --max-model-len {limit} or less",
        )
    if req.replicas is not None and req.replicas > 1:
        count = req.replicas
        chosen = _replicas_choice(ctx, req.profile, count)
        advice = None
        how = f"--replicas {count}"
    else:
        chosen, count, advice = _one_engine_or_replicas(ctx, req)
        how = "the planner's choice: they serve more than one engine here"
    tier = chosen.candidate.tier
    gpu_indices = [g.index for g in ctx.hardware.gpus[: tier.gpu_count * count]]
    tiers = explain.tier_fits(ctx, chosen, count)
    reasons = explain.reasons(ctx, chosen, tiers, advice, count)
    if count > 1:
        groups = gpu_groups(gpu_indices, tier.gpu_count, count)
        # Second, after the hardware: the first thing to know about a plan of several engines.
        reasons.insert(1, explain.replica_reason(chosen, count, groups, how, advice))
    return Plan(
        model_id=spec.model_id,
        model_name=spec.name,
        model_architecture=spec.architecture,
        thinking_modes=spec.thinking_modes,
        profile=tier.name,
        profile_description=tier.description,
        inventory_source=inventory.source,
        driver_version=inventory.driver_version,
        cuda_driver_version=inventory.cuda_driver_version,
        gpus=list(ctx.hardware.gpus),
        vllm=chosen.candidate.settings,
        memory=chosen.candidate.memory,
        reasons=[*reasons, _model_reason(spec, req.model)],
        warnings=explain.warnings(ctx, chosen),
        upgrades=explain.upgrades(ctx, chosen),
        reduced=chosen.reduced,
        gpu_indices=gpu_indices,
        tiers=tiers,
        replicas=advice,
        replica_count=count,
    )


def _one_engine_flag(req: PlanRequest) -> str | None:
    """The option that keeps the plan at one engine, as the user typed it (None: nothing does)."""
    if req.profile is not None:
        return f"--profile {req.profile}"
    if req.tensor_parallel_size is not None:
        return f"--tensor-parallel-size {req.tensor_parallel_size}"
    if req.replicas == 1:
        return "--replicas 1"
    return None


def _one_engine_or_replicas(ctx: Context, req: PlanRequest) -> tuple[Choice, int, ReplicaAdvice | None]:
    """`--replicas auto` (or 1): today's one-engine choice, unless the replica advice prefers one
    engine per GPU and nothing the user gave forces one engine (--profile, --tensor-parallel-size,
    --replicas 1). Returns the choice, the replica count and the advice (judged on one engine)."""
    one_engine = select(ctx, req.profile)
    flag = _one_engine_flag(req)
    chosen, count = one_engine, 1
    if flag is None:
        preview = explain.replica_advice(ctx, one_engine)
        replica = explain.single_gpu_choice(ctx, one_engine) if preview and preview.prefer_replicas else None
        # Every replica's GPU must let vLLM start; a busy one keeps the plan at the one engine that starts.
        if preview is not None and replica is not None and not busy_gpus(ctx, replica, preview.replicas):
            chosen, count = replica, preview.replicas
    advice = explain.replica_advice(ctx, one_engine, runs_replicas=count > 1, one_engine_flag=flag)
    return chosen, count, advice


def _replicas_choice(ctx: Context, profile: str | None, count: int) -> Choice:
    """`--replicas N`: the highest tier (or the forced one) of which N copies, each on its own GPUs,
    fit the inventory; refused when N replicas of even the smallest need more GPUs than there are."""
    by_name = {t.name: t for t in ctx.tiers}
    if profile is not None and profile not in by_name:
        select(ctx, profile)  # raises the unknown-profile error, with the names
    candidates = (by_name[profile],) if profile is not None else ctx.tiers
    fitting = tuple(t for t in ctx.tiers if t.gpu_count * count <= ctx.hardware.count)
    if not any(t in fitting for t in candidates):
        raise refuse_replicas(ctx, count, candidates)
    narrowed = replace(ctx, tiers=fitting)
    chosen = select(narrowed, profile)
    busy = busy_gpus(narrowed, chosen, count)
    if busy:
        raise refuse_busy(narrowed, by_name.get(profile) if profile else None, chosen, busy)
    return chosen


def _model_reason(spec: ModelSpec, asked: str | None) -> str:
    """Where the model's numbers came from, and what its deployment gets (parser, remote code, modes)."""
    if asked is None:
        source = "profiles/model.yaml (the default)"
    elif spec.model_id.startswith("/"):
        source = f"the folder's config.json and weights ({spec.model_id})"
    else:
        source = "its spec in profiles/models"
    lm = spec.language_model
    parser = f"--reasoning-parser {spec.reasoning_parser}" if spec.reasoning_parser else "no reasoning parser"
    modes = f"thinking modes {', '.join(spec.thinking_modes)}" if spec.thinking_modes else "no thinking modes"
    images = "text only" if spec.vision is None else f"{spec.vision.profiled_image_tokens:,}-token profiled image"
    return (
        f"Model {spec.name} ({spec.architecture}: {spec.parameters / 1e9:.2f} B parameters, {lm.num_hidden_layers} "
        f"layers, {lm.num_key_value_heads} KV heads × {lm.head_dim}, {lm.max_position_embeddings:,}-token context, "
        f"{images}) from {source}; {parser}, {modes}"
        f"{', --trust-remote-code' if spec.trust_remote_code else ''}."
    )
