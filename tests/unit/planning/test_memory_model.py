"""The memory arithmetic: each term from the model spec and profiles/memory.yaml, and how they add up."""

from __future__ import annotations

from pathlib import Path

import pytest
from planning_helpers import GIB, gpu

from r4b_deploy.errors import ConfigError
from r4b_deploy.planning import memory as mem
from r4b_deploy.planning.memory import ServeSettings, load_memory_model_file, memory_model
from r4b_deploy.spec import model_spec

SPEC = model_spec()
MM = memory_model()


def settings(**changes: object) -> ServeSettings:
    base = ServeSettings(
        dtype="bfloat16",
        tensor_parallel_size=1,
        max_model_len=16384,
        max_num_seqs=8,
        max_num_batched_tokens=2048,
        gpu_memory_utilization=0.85,
        kv_cache_dtype="auto",
        images_per_prompt=1,
        enforce_eager=False,
    )
    return base.with_(**changes)


@pytest.mark.parametrize(
    ("tp", "kv_dtype", "expected_bytes"),
    [
        (1, "auto", 147_456),  # the documented 144 KiB per token in BF16
        (1, "fp8", 73_728),
        (8, "auto", 18_432),  # 8 KV heads over 8 GPUs: one per GPU
        (2, "auto", 73_728),
    ],
)
def test_kv_bytes_per_token(tp: int, kv_dtype: str, expected_bytes: int) -> None:
    assert mem.kv_bytes_per_token(SPEC, settings(tensor_parallel_size=tp, kv_cache_dtype=kv_dtype)) == expected_bytes


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_weights_split_over_tensor_parallel_ranks(tp: int) -> None:
    whole = SPEC.parameters * SPEC.weight_bytes_per_param["bfloat16"]
    assert mem.weights_bytes(SPEC, settings(tensor_parallel_size=tp)) == -(-whole // tp)


def test_weights_near_documented_size() -> None:
    # R-4B's BF16 weights are about 9.0 GiB.
    assert 8.8 * GIB < mem.weights_bytes(SPEC, settings()) < 9.2 * GIB


@pytest.mark.parametrize(
    ("batched", "seqs", "low_gib"),
    [
        (2048, 256, 1.6),  # top of the 0.9-1.6 GiB range logged on 24 GB cards
        (8192, 1024, 7.4),  # top of the 4.8-7.4 GiB range logged on H100
    ],
)
def test_activation_reserve_is_conservative(batched: int, seqs: int, low_gib: float) -> None:
    reserve = mem.activation_bytes(SPEC, settings(max_num_batched_tokens=batched, max_num_seqs=seqs), MM)
    assert low_gib * GIB <= reserve <= (low_gib + 1) * GIB


def test_activation_grows_with_batched_tokens_and_sequences() -> None:
    a = mem.activation_bytes(SPEC, settings(), MM)
    assert mem.activation_bytes(SPEC, settings(max_num_batched_tokens=4096), MM) > a
    assert mem.activation_bytes(SPEC, settings(max_num_seqs=64), MM) > a


def test_vision_encoder_scales_with_images() -> None:
    one = mem.vision_encoder_bytes(SPEC, settings(images_per_prompt=1), MM)
    assert one > 0
    assert mem.vision_encoder_bytes(SPEC, settings(images_per_prompt=3), MM) == 3 * one
    assert mem.vision_encoder_bytes(SPEC, settings(images_per_prompt=0), MM) == 0


def test_eager_drops_cuda_graph_reserve() -> None:
    assert mem.cuda_graph_bytes(settings(), MM) > 0
    assert mem.cuda_graph_bytes(settings(enforce_eager=True), MM) == 0


@pytest.mark.parametrize("total_gib", [15, 22.49, 40, 80, 140])
@pytest.mark.parametrize("s", [settings(), settings(tensor_parallel_size=8, gpu_memory_utilization=0.8)])
def test_breakdown_adds_up_exactly(total_gib: float, s: ServeSettings) -> None:
    total = int(total_gib * GIB)
    m = mem.estimate(total, SPEC, s, MM)
    assert m.budget_bytes == int(total * s.gpu_memory_utilization)
    parts = m.weights_bytes + m.activation_bytes + m.vision_encoder_bytes + m.non_torch_bytes + m.cuda_graph_bytes
    assert parts + m.kv_cache_bytes == m.budget_bytes
    block = MM.kv_block_size_tokens
    assert m.kv_tokens % block == 0
    assert m.kv_tokens == max(0, m.kv_cache_bytes // (block * m.kv_bytes_per_token)) * block
    assert m.max_concurrency == round(m.kv_tokens / s.max_model_len, 2)


def test_budget_is_of_total_not_free_memory() -> None:
    g = gpu(memory_mib=23034, memory_free_bytes=GIB)
    m = mem.estimate(g.memory_total_bytes, SPEC, settings(), MM)
    assert m.budget_bytes == int(g.memory_total_bytes * 0.85)


@pytest.mark.parametrize(
    "s", [settings(), settings(max_model_len=40960, images_per_prompt=3), settings(tensor_parallel_size=8)]
)
def test_required_memory_is_tight(s: ServeSettings) -> None:
    need = mem.required_gpu_memory_bytes(SPEC, s, MM)
    assert mem.fits(mem.estimate(need, SPEC, s, MM), s)
    assert not mem.fits(mem.estimate(need - 4096, SPEC, s, MM), s)


@pytest.mark.parametrize(
    ("name", "memory_mib", "expected"),
    [
        ("H100-80GB", 81559, (8192, 1024)),
        ("NVIDIA H200", 143771, (8192, 1024)),
        ("A100-80GB", 81920, (2048, 256)),  # vLLM exempts A100s from the larger default
        ("NVIDIA A100-SXM4-80GB", 81920, (2048, 256)),
        ("L4", 23034, (2048, 256)),
        ("RTX-A6000", 49140, (2048, 256)),
    ],
)
def test_vllm_default_batching(name: str, memory_mib: int, expected: tuple[int, int]) -> None:
    pair = mem.vllm_default_batching(gpu(name=name, memory_mib=memory_mib), MM)
    assert (pair.max_num_batched_tokens, pair.max_num_seqs) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kv_block_size_tokens: 0\n", "kv_block_size_tokens"),
        ("surprise: 1\n", "surprise"),
    ],
)
def test_malformed_memory_file(tmp_path: Path, text: str, field: str) -> None:
    import yaml

    from r4b_deploy.paths import profiles_dir

    data = yaml.safe_load((profiles_dir() / "memory.yaml").read_text())
    data.update(yaml.safe_load(text))
    path = tmp_path / "memory.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_memory_model_file(path)
    assert str(path) in info.value.message
    assert repr(field) in info.value.message
