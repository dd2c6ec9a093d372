"""The CPU rehearsal's plan: the tiny model, the flags verified on vLLM's CPU build, no GPU.

Its KV cache goes through the planner's arithmetic too (`memory.cpu_breakdown`): the CPU build's KV
space is VLLM_CPU_KVCACHE_SPACE, so the plan predicts the KV tokens vLLM will log, and `up` checks
the prediction against the real CPU log as it does on a GPU.
"""

from __future__ import annotations

import os

from r4b_deploy.errors import InfeasibleError, UsageError
from r4b_deploy.pins import rehearsal_profile
from r4b_deploy.planning.memory import ModelNumbers, cpu_breakdown, gib_to_bytes
from r4b_deploy.planning.plan import MemoryBreakdown, Plan, PlanRequest, VllmSettings
from r4b_deploy.planning.profiles import REHEARSAL_TIER_NAME, load_rehearsal_tier
from r4b_deploy.spec import ModelSpec, model_spec

KV_SPACE_VAR = "VLLM_CPU_KVCACHE_SPACE"  # GiB; vLLM's CPU build reads it as an integer (platforms/cpu.py)


def rehearsal_plan(req: PlanRequest) -> Plan:
    """Refuses the options that only mean something on a GPU; the memory breakdown has the KV terms only."""
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
    replicas = _replica_count(req.replicas)
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
        reasoning_parser=spec.reasoning_parser,
        enforce_eager=tier.enforce_eager,
    )
    kv_space = cpu.env.get(KV_SPACE_VAR)
    memory = _kv_memory(settings, spec, int(kv_space), cpu.kv_block_size_tokens) if kv_space else _no_memory()
    return Plan(
        model_id=tier.model,
        profile=tier.name,
        profile_description=tier.description,
        rehearsal=True,
        inventory_source="rehearsal",
        gpus=[],
        vllm=settings,
        memory=memory,
        reasons=[
            f"CPU rehearsal: the tiny R-4B-architecture model at {tier.model} on vLLM's CPU build "
            f"({cpu.vllm_package}); no GPU is needed.",
            f"KV cache: {KV_SPACE_VAR}={kv_space or 'unset'} GiB (profiles/vllm.yaml), not "
            f"gpu_memory_utilization: {memory.kv_tokens:,} tokens in {cpu.kv_block_size_tokens}-token blocks of "
            f"{memory.kv_bytes_per_token} B per token (the tiny model); the GPU terms do not apply and are zero.",
            f"max_model_len {max_model_len} from profiles/vllm.yaml; max_num_batched_tokens = max_model_len.",
            *_replica_reasons(replicas),
        ],
        replica_count=replicas,
    )


def available_cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one, as in a cgroup-limited
    CI runner), which is what pinning a replica per core can use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _replica_count(asked: int | None) -> int:
    """`--replicas N` rehearses N replicas, each pinned to its own core; auto is one (a CPU engine
    gains nothing from a second on the same cores)."""
    if asked is None:
        return 1
    cores = available_cpu_cores()
    if asked > cores:
        raise InfeasibleError(
            f"--replicas {asked}: each rehearsal replica is pinned to its own CPU core, and this machine has "
            f"{cores} available",
            fix=f"use --replicas {cores} or fewer, or rehearse on a machine with more cores",
        )
    return asked


def _replica_reasons(replicas: int) -> list[str]:
    if replicas == 1:
        return []
    return [
        f"{replicas} replicas of the tiny model behind vLLM's router, each pinned to its own CPU core "
        f"(--replicas {replicas}; this machine has {available_cpu_cores()}): the rehearsal proves the routing, "
        "the health checks and the failover, not speed."
    ]


def _kv_memory(settings: VllmSettings, spec: ModelSpec, kv_space_gib: int, block_tokens: int) -> MemoryBreakdown:
    """The tiny model's KV cache in the CPU build's space. Its numbers are the ones the rehearsal
    builds it with (rehearsal/tiny_model.py); the KV dtype is the spec's for --kv-cache-dtype auto."""
    from r4b_deploy.rehearsal.tiny_model import BPE_VOCAB_SIZE, TEXT

    numbers = ModelNumbers(
        num_hidden_layers=TEXT["num_hidden_layers"],
        num_key_value_heads=TEXT["num_key_value_heads"],
        head_dim=TEXT["head_dim"],
        vocab_size=BPE_VOCAB_SIZE,
        hidden_size=TEXT["hidden_size"],
        weights_bytes=0,  # not modelled: the CPU build sizes nothing by it
        kv_bytes_per_element=spec.kv_cache_bytes_per_element[settings.kv_cache_dtype],
    )
    return cpu_breakdown(numbers, gib_to_bytes(kv_space_gib), settings, block_tokens)


def _no_memory() -> MemoryBreakdown:
    """No KV space set: vLLM sizes the cache from the machine's free memory; nothing to predict."""
    zeros = {name: 0 for name, field in MemoryBreakdown.model_fields.items() if field.is_required()}
    return MemoryBreakdown(**{**zeros, "max_concurrency": 0.0})
