"""The tier files: the packaged ones match the documented tiers; broken ones fail with file, field, problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from r4b_deploy.errors import ConfigError, ExitCode
from r4b_deploy.paths import profiles_dir
from r4b_deploy.planning.profiles import load_rehearsal_tier, load_tier_file, load_tiers
from r4b_deploy.spec import model_spec

TIERS_DIR = profiles_dir() / "tiers"

# The documented tiers table (seed tutorial): GPUs, min and recommended GB per GPU, TP, utilization.
DOCUMENTED = {
    "light": (1, 24, 32, 1, 0.85),
    "medium": (1, 40, 48, 1, 0.85),
    "heavy": (1, 80, 96, 1, 0.85),
    "tp8": (8, 16, 24, 8, 0.8),
}


def test_packaged_tiers_in_order() -> None:
    assert [t.name for t in load_tiers()] == ["light", "medium", "heavy", "tp8"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_packaged_tier_matches_documented_table(name: str) -> None:
    tier = {t.name: t for t in load_tiers()}[name]
    gpus, min_gb, rec_gb, tp, util = DOCUMENTED[name]
    assert (tier.gpu_count, tier.min_memory_gb_per_gpu, tier.recommended_memory_gb_per_gpu) == (gpus, min_gb, rec_gb)
    assert tier.tensor_parallel_size == tp
    assert tier.vllm.gpu_memory_utilization == util
    assert tier.vllm.max_num_batched_tokens is None  # vLLM's default for the GPU
    assert tier.use_cases


def test_tiers_grow_in_context_and_images() -> None:
    single = [t for t in load_tiers() if t.gpu_count == 1]
    lengths = [t.vllm.max_model_len for t in single]
    assert lengths == sorted(lengths)
    assert [t.vllm.images_per_prompt for t in single] == sorted(t.vllm.images_per_prompt for t in single)
    assert max(lengths) <= model_spec().language_model.max_position_embeddings


def _write(tmp_path: Path, name: str, changes: dict, remove: tuple[str, ...] = ()) -> Path:
    data = yaml.safe_load((TIERS_DIR / f"{name}.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    for key in remove:
        del data[key]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("tier", "changes", "remove", "field", "problem"),
    [
        ("light", {"recommended_memory_gb_per_gpu": 16}, (), "recommended_memory_gb_per_gpu", "below"),
        ("tp8", {"tensor_parallel_size": 3, "gpu_count": 3}, (), "tensor_parallel_size", "does not divide"),
        ("tp8", {"tensor_parallel_size": 16, "gpu_count": 16}, (), "tensor_parallel_size", "does not divide"),
        ("tp8", {"gpu_count": 4}, (), "tensor_parallel_size", "gpu_count"),
        ("heavy", {"vllm.max_model_len": 65536}, (), "vllm.max_model_len", "max_position_embeddings"),
        ("heavy", {"vllm.images_per_prompt": 4}, (), "vllm.images_per_prompt", "no room"),
        ("medium", {"vllm.max_num_batched_tokens": 32}, (), "vllm.max_num_batched_tokens", "max_num_seqs"),
        ("medium", {"vllm.gpu_memory_utilization": 1.5}, (), "vllm.gpu_memory_utilization", "less than or equal"),
        ("medium", {"min_memory_gb_per_gpu": "lots"}, (), "min_memory_gb_per_gpu", "valid number"),
        ("light", {"colour": "blue"}, (), "colour", "Extra inputs are not permitted"),
        ("light", {"vllm.sampling": 1}, (), "vllm.sampling", "Extra inputs are not permitted"),
        ("light", {}, ("vllm",), "vllm", "Field required"),
        ("light", {"name": "medium"}, (), "name", "file name"),
    ],
)
def test_malformed_tier_file(
    tmp_path: Path, tier: str, changes: dict, remove: tuple[str, ...], field: str, problem: str
) -> None:
    path = _write(tmp_path, tier, changes, remove)
    with pytest.raises(ConfigError) as info:
        load_tier_file(path)
    message = info.value.message
    assert str(path) in message
    assert repr(field) in message
    assert problem in message
    assert info.value.exit_code == ExitCode.USAGE


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "light.yaml"
    path.write_text("name: light\nvllm: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_tier_file(path)


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "light.yaml"
    path.write_text("- light\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_tier_file(path)


def test_duplicate_rank_across_files(tmp_path: Path) -> None:
    for path in TIERS_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    _write(tmp_path, "medium", {"rank": 1})
    with pytest.raises(ConfigError, match="rank") as info:
        load_tiers(tmp_path)
    assert "light.yaml" in info.value.message or "medium.yaml" in info.value.message


def test_directory_without_tiers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no tier files"):
        load_tiers(tmp_path)


def test_copied_tiers_load_from_another_directory(tmp_path: Path) -> None:
    for path in TIERS_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    assert [t.name for t in load_tiers(tmp_path)] == [t.name for t in load_tiers()]


def test_rehearsal_tier() -> None:
    tier = load_rehearsal_tier()
    assert tier.model.startswith("/")
    assert tier.enforce_eager


def test_malformed_rehearsal_tier(tmp_path: Path) -> None:
    data = yaml.safe_load((TIERS_DIR / "rehearsal.yaml").read_text())
    data["gpu_memory_utilization"] = 0.9
    (tmp_path / "rehearsal.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="'gpu_memory_utilization'"):
        load_rehearsal_tier(tmp_path)
