"""The CPU rehearsal's plan: the tiny model, the flags verified on vLLM's CPU build, no GPU."""

from __future__ import annotations

from r4b_deploy.errors import UsageError
from r4b_deploy.pins import rehearsal_profile
from r4b_deploy.planning.plan import MemoryBreakdown, Plan, PlanRequest, VllmSettings
from r4b_deploy.planning.profiles import REHEARSAL_TIER_NAME, load_rehearsal_tier
from r4b_deploy.spec import model_spec


def rehearsal_plan(req: PlanRequest) -> Plan:
    """Refuses the options that only mean something on a GPU; the memory breakdown stays zero."""
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
    spec = model_spec()
    tier = load_rehearsal_tier()
    cpu = rehearsal_profile()
    max_model_len = req.max_model_len or cpu.max_model_len
    max_num_seqs = req.max_num_seqs or tier.max_num_seqs
    settings = VllmSettings(
        model=tier.model,
        served_model_name=spec.served_model_name,
        trust_remote_code=tier.trust_remote_code,
        dtype=tier.dtype,
        tensor_parallel_size=1,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        # Without chunked prefill (not every CPU build has it) vLLM needs a whole context per step.
        max_num_batched_tokens=max(max_model_len, max_num_seqs),
        gpu_memory_utilization=0.0,  # no GPU: the KV cache is VLLM_CPU_KVCACHE_SPACE
        kv_cache_dtype="auto",
        images_per_prompt=req.images_per_prompt if req.images_per_prompt is not None else tier.images_per_prompt,
        reasoning_parser=spec.thinking.reasoning_parser,
        enforce_eager=tier.enforce_eager,
    )
    kv_space = cpu.env.get("VLLM_CPU_KVCACHE_SPACE", "vLLM's default")
    zeros = {name: 0 for name, field in MemoryBreakdown.model_fields.items() if field.is_required()}
    return Plan(
        model_id=tier.model,
        profile=tier.name,
        profile_description=tier.description,
        rehearsal=True,
        inventory_source="rehearsal",
        gpus=[],
        vllm=settings,
        memory=MemoryBreakdown(**{**zeros, "max_concurrency": 0.0}),
        reasons=[
            f"CPU rehearsal: the tiny R-4B-architecture model at {tier.model} on vLLM's CPU build "
            f"({cpu.vllm_package}); no GPU is needed.",
            f"KV cache: VLLM_CPU_KVCACHE_SPACE={kv_space} GiB (profiles/vllm.yaml), not gpu_memory_utilization: "
            "the GPU memory breakdown does not apply and is left at zero.",
            f"max_model_len {max_model_len} from profiles/vllm.yaml; max_num_batched_tokens = max_model_len.",
        ],
    )
