"""The memory arithmetic: each term from the model spec and profiles/memory.yaml, and how they add up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from planning_helpers import GIB, gpu

from r4b_deploy.errors import ConfigError
from r4b_deploy.planning import memory as mem
from r4b_deploy.planning.coefficients import load_memory_model_file, memory_model
from r4b_deploy.planning.plan import VllmSettings
from r4b_deploy.spec import model_spec

SPEC = model_spec()
MM = memory_model()


def settings(**changes: object) -> VllmSettings:
    base = VllmSettings(
        model=SPEC.model_id,
        served_model_name=SPEC.served_model_name,
        trust_remote_code=SPEC.trust_remote_code,
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
    return base.model_copy(update=changes)


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


RELEASE = MM.release()


@pytest.mark.parametrize(
    ("batched", "seqs", "low_gib", "high_gib"),
    [
        # Issue 9: the old 1.85 / 7.41 GiB were ~6x what logs show. vLLM 0.19 logged 2.21 GiB for
        # Qwen3-8B (R-4B's vocabulary) at H100's defaults; at 2,048 / 256 the sampler is a quarter.
        (2048, 256, 0.6, 0.75),
        (8192, 1024, 2.1, 2.3),
    ],
)
def test_activation_peak_at_vllm_defaults(batched: int, seqs: int, low_gib: float, high_gib: float) -> None:
    peak = mem.activation_bytes(SPEC, settings(max_num_batched_tokens=batched, max_num_seqs=seqs), MM)
    assert low_gib * GIB <= peak <= high_gib * GIB


def test_activation_peak_is_the_larger_phase_not_the_sum() -> None:
    """The forward pass's activations are freed before the sampler runs: a few sequences and many
    batched tokens peak in the forward pass, many sequences in the sampler."""
    few = settings(max_num_batched_tokens=8192, max_num_seqs=8)
    assert mem.activation_bytes(SPEC, few, MM) == RELEASE.forward_bytes_per_batched_token * 8192
    many = settings(max_num_batched_tokens=2048, max_num_seqs=1024)
    sampler = RELEASE.sampler_bytes_per_vocab_entry * SPEC.language_model.vocab_size * 1024
    assert mem.activation_bytes(SPEC, many, MM) == sampler + mem.gib_to_bytes(RELEASE.sampler_base_gib)


def test_activation_grows_with_batched_tokens_and_sequences() -> None:
    a = mem.activation_bytes(SPEC, settings(), MM)
    assert mem.activation_bytes(SPEC, settings(max_num_batched_tokens=4096), MM) > a
    assert mem.activation_bytes(SPEC, settings(max_num_seqs=1024), MM) > a


def test_vision_encoder_profiles_one_image_whatever_the_limit() -> None:
    """vLLM profiles one image of the largest size (the encoder budget holds one), so the term is
    the same for 1 or 3 images per prompt (issue 9: it was 3x), and 0 for text only."""
    one = mem.vision_encoder_bytes(SPEC, settings(images_per_prompt=1), MM)
    assert one > 0
    assert mem.vision_encoder_bytes(SPEC, settings(images_per_prompt=3), MM) == one
    assert mem.vision_encoder_bytes(SPEC, settings(images_per_prompt=0), MM) == 0


def test_vision_encoder_overlaps_the_lm_peak() -> None:
    """The encoder's transient overlaps the LM peak (max); only its cached output adds to a big one."""
    s = settings(max_num_batched_tokens=8192, max_num_seqs=1024)
    tokens = SPEC.vision.profiled_image_tokens
    output = tokens * SPEC.language_model.hidden_size * SPEC.weight_bytes_per_param["bfloat16"]
    assert mem.vision_encoder_bytes(SPEC, s, MM) == output


def test_eager_drops_cuda_graph_reserve() -> None:
    assert mem.cuda_graph_bytes(settings(), RELEASE) > 0
    assert mem.cuda_graph_bytes(settings(enforce_eager=True), RELEASE) == 0


@pytest.mark.parametrize("total_gib", [15, 22.49, 40, 80, 140])
@pytest.mark.parametrize("s", [settings(), settings(tensor_parallel_size=8, gpu_memory_utilization=0.8)])
@pytest.mark.parametrize("release", ["0.19.1", "0.33.0"])
def test_breakdown_adds_up_exactly(total_gib: float, s: VllmSettings, release: str) -> None:
    total = int(total_gib * GIB)
    m = mem.estimate(total, SPEC, s, MM, release)
    # A bare NVML total: CUDA's is that less the stated margin; the budget is its share (ceil, as vLLM).
    assert m.gpu_memory_bytes == total - mem.gib_to_bytes(MM.cuda_total_margin_gib)
    assert m.budget_bytes == math.ceil(m.gpu_memory_bytes * s.gpu_memory_utilization)
    parts = m.weights_bytes + m.activation_bytes + m.vision_encoder_bytes + m.non_torch_bytes + m.cuda_graph_bytes
    assert parts + m.kv_cache_bytes == m.budget_bytes
    block = MM.kv_block_size_tokens
    assert m.kv_tokens % block == 0
    assert m.kv_tokens == max(0, m.kv_cache_bytes // (block * m.kv_bytes_per_token)) * block
    assert m.max_concurrency == round(m.kv_tokens / s.max_model_len, 2)


@pytest.mark.parametrize(("release", "in_budget"), [("0.19.1", False), ("0.32.0", True), ("0.33.0", True)])
def test_cuda_graphs_charged_where_the_release_charges_them(release: str, in_budget: bool) -> None:
    """From 0.21 vLLM profiles the graphs and takes them out of the KV cache (0.33.0's gpu_worker.py);
    before, they are captured after the KV cache, in the headroom above the budget."""
    m = mem.estimate(80 * GIB, SPEC, settings(), MM, release)
    graphs = mem.gib_to_bytes(MM.releases[m.vllm_release].cuda_graph_gib)
    assert (m.cuda_graph_bytes, m.cuda_graph_headroom_bytes) == ((graphs, 0) if in_budget else (0, graphs))


def test_release_lookup_takes_the_newest_entry_at_or_below_the_pin() -> None:
    assert MM.release_key("0.33.0") == MM.release_key("0.21.0") == "0.21.0"
    assert MM.release_key("0.19.1") == "0.17.0"
    assert MM.release_key("0.11.0") == "0.10.2"
    assert MM.release_key("0.9.0") == "0.10.2"  # older than every entry: the oldest


def test_budget_is_of_cuda_total_and_free_memory_must_hold_it() -> None:
    """vLLM sizes against CUDA's total, not free memory, but refuses to start when less than the
    budget is free: a measured GPU with 1 GiB free has the usual budget and does not fit."""
    g = gpu(memory_mib=23034, memory_free_bytes=GIB)
    m = mem.estimate(g, SPEC, settings(), MM)
    assert m.budget_bytes == math.ceil(m.gpu_memory_bytes * 0.85)
    assert not mem.starts(m)
    assert not mem.fits(m, settings())
    assert mem.fits(mem.estimate(gpu(memory_mib=23034), SPEC, settings(), MM), settings())


@pytest.mark.parametrize(("name", "cuda_total_gib"), [("H100-80GB", 79.19), ("A100-40GB", 39.38), ("T4", 14.56)])
def test_measured_cuda_total_from_the_catalog(name: str, cuda_total_gib: float) -> None:
    from r4b_deploy.hardware.catalog import catalog_entry

    entry = catalog_entry(name)
    m = mem.estimate(gpu(name=entry.name, memory_mib=entry.memory_mib), SPEC, settings(), MM)
    assert abs(m.gpu_memory_bytes / GIB - cuda_total_gib) < 0.01


@pytest.mark.parametrize(
    ("name", "memory_mib", "utilization", "tp", "starts"),
    [
        ("H100-80GB", 81559, 0.99, 1, True),
        ("H100-80GB", 81559, 0.995, 1, False),  # 78.79 GiB asked, 78.68 free after the context
        ("A100-40GB", 40960, 0.95, 8, True),
        ("A100-40GB", 40960, 0.98, 8, False),  # NCCL's ~1.5 GiB: 38.59 asked, 37.83 free
    ],
)
def test_utilization_leaving_no_room_for_the_cuda_context_is_refused(
    name: str, memory_mib: int, utilization: float, tp: int, starts: bool
) -> None:
    """Issue 9: vLLM refuses to start when less than utilization x CUDA total is free after the CUDA
    context (and NCCL with TP); the planner accepted 0.995 on an H100."""
    g = gpu(name=name, memory_mib=memory_mib, cc="9.0")
    s = settings(gpu_memory_utilization=utilization, tensor_parallel_size=tp, max_model_len=4096)
    m = mem.estimate(g, SPEC, s, MM, "0.33.0")
    assert mem.starts(m) is starts
    assert mem.fits(m, s) is starts


@pytest.mark.parametrize(
    "s", [settings(), settings(max_model_len=40960, images_per_prompt=3), settings(tensor_parallel_size=8)]
)
def test_required_memory_is_tight(s: VllmSettings) -> None:
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


def test_measured_cuda_total_follows_the_driver_s_nvml_figure() -> None:
    """A T4 reports 15,360 MiB on recent drivers and 15,109 on older ones: the same card, whose CUDA
    total moves with it; a card far from every entry gets NVML's total less the margin."""
    from r4b_deploy.hardware.catalog import catalog_entry

    t4 = catalog_entry("T4")
    older = mem.estimate(gpu(name="Tesla T4", memory_mib=15109, cc="7.5"), SPEC, settings(), MM)
    assert older.gpu_memory_bytes == t4.cuda_total_bytes - (15360 - 15109) * 1024**2
    odd = mem.estimate(gpu(name="Tesla T4", memory_mib=12000, cc="7.5"), SPEC, settings(), MM)
    assert odd.gpu_memory_bytes == 12000 * 1024**2 - mem.gib_to_bytes(MM.cuda_total_margin_gib)
