"""The planner: inventory + model spec + tiers + memory model -> one frozen Plan.

Selection: the highest tier (light < medium < heavy < tp8) whose documented minimum the GPUs
meet and whose settings the memory arithmetic holds. Below every minimum, the lowest tier that
still serves, with its context shrunk and memory relieved step by step (a "reduced" plan).
A plan never carries settings vLLM would refuse: one full max_model_len sequence fits the KV
cache, tensor parallelism divides the heads, bf16 only where the GPU has it.

The parts: `search` (candidates and the choice), `refusals` (why not, and the nearest values
that fit), `explain` (reasons, warnings, upgrades, replica advice), `rehearsal` (the CPU plan).
"""

from __future__ import annotations

from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import Inventory
from r4b_deploy.hardware.resolve import resolve_inventory
from r4b_deploy.planning import explain
from r4b_deploy.planning.memory import memory_model, min_max_model_len
from r4b_deploy.planning.plan import Plan, PlanRequest
from r4b_deploy.planning.profiles import REHEARSAL_TIER_NAME, load_tiers
from r4b_deploy.planning.refusals import select
from r4b_deploy.planning.search import Context, Overrides, planned_hardware
from r4b_deploy.spec import model_spec


def make_plan(req: PlanRequest, inventory: Inventory | None = None) -> Plan:
    """Plan R-4B on `inventory` (default: the one `req` names, else the GPUs NVML measures)."""
    rehearsal = req.rehearsal or req.profile == REHEARSAL_TIER_NAME
    _check_context_bounds(req, rehearsal)
    if rehearsal:
        from r4b_deploy.planning.rehearsal import rehearsal_plan

        return _with_cpu_release(rehearsal_plan(req), req)
    if inventory is None:
        inventory = resolve_inventory(gpu=req.gpu, inventory_file=req.inventory_file)
    from r4b_deploy.pins import choose_gpu_pins

    # The release first: it decides the memory coefficients (profiles/memory.yaml) the search uses.
    choice = choose_gpu_pins(inventory.driver_version, req.vllm_version)
    plan = _gpu_plan(req, inventory, choice.pins.vllm_version)
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
    built into the image: --vllm-version and --revision do not apply to it."""
    from r4b_deploy.pins import gpu_versions, rehearsal_profile

    for flag, value in (("--vllm-version", req.vllm_version), ("--revision", req.revision)):
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


def _check_context_bounds(req: PlanRequest, rehearsal: bool) -> None:
    """Values no context can serve are the user's to correct (exit 4), before any arithmetic."""
    spec = model_spec()
    most_images = spec.language_model.max_position_embeddings // spec.vision.one_tile_image_tokens
    if req.images_per_prompt is not None and req.images_per_prompt > most_images:
        raise UsageError(
            f"--images-per-prompt {req.images_per_prompt}: at most {most_images} (one-tile images of "
            f"{spec.vision.one_tile_image_tokens:,} tokens each fill R-4B's "
            f"{spec.language_model.max_position_embeddings:,}-token context)",
            fix=f"use --images-per-prompt {most_images} or fewer",
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


def _gpu_plan(req: PlanRequest, inventory: Inventory, vllm_version: str) -> Plan:
    spec = model_spec()
    limit = spec.language_model.max_position_embeddings
    ctx = Context(
        spec=spec,
        memory_model=memory_model(),
        tiers=load_tiers(),
        hardware=planned_hardware(inventory, spec),
        overrides=Overrides.from_request(req),
        vllm_version=vllm_version,
    )
    if req.max_model_len is not None and req.max_model_len > limit:
        raise UsageError(
            f"--max-model-len {req.max_model_len} exceeds R-4B's max_position_embeddings {limit}",
            fix=f"use --max-model-len {limit} or less",
        )
    chosen = select(ctx, req.profile)
    tier = chosen.candidate.tier
    gpu_indices = [g.index for g in ctx.hardware.gpus[: tier.gpu_count]]
    tiers = explain.tier_fits(ctx, chosen)
    advice = explain.replica_advice(ctx, chosen)
    return Plan(
        model_id=spec.model_id,
        profile=tier.name,
        profile_description=tier.description,
        inventory_source=inventory.source,
        driver_version=inventory.driver_version,
        cuda_driver_version=inventory.cuda_driver_version,
        gpus=list(ctx.hardware.gpus),
        vllm=chosen.candidate.settings,
        memory=chosen.candidate.memory,
        reasons=explain.reasons(ctx, chosen, tiers, advice),
        warnings=explain.warnings(ctx, chosen, gpu_indices),
        upgrades=explain.upgrades(ctx, chosen),
        reduced=chosen.reduced,
        gpu_indices=gpu_indices,
        tiers=tiers,
        replicas=advice,
    )
