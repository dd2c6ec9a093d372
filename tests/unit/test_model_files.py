"""Reading a model folder (`--model DIR`): config.json and the weights' size become a ModelSpec;
what the planner cannot model is refused (exit 4) with what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_folders import (
    LLAMA_CONFIG,
    LLAMA_PARAMETERS,
    PLAIN_TEMPLATE,
    QWEN3_CONFIG,
    QWEN3_VL_CONFIG,
    QWEN3_VL_PARAMETERS,
    QWEN3_VL_PROCESSOR,
    R4B_CONFIG,
    THINK_TEMPLATE,
    model_folder,
    write_safetensors_header,
)

from r4b_deploy.errors import ExitCode, UsageError
from r4b_deploy.model_files import llava_next_image_tokens, safetensors_parameters, spec_from_folder
from r4b_deploy.spec import model_spec, named_spec, resolve_model

ONEVISION_PINPOINTS = [(384 * h, 384 * w) for h in range(1, 7) for w in range(1, 7)]


def test_llama_from_its_index(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "Llama-3.1-8B", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    spec = spec_from_folder(folder)
    assert spec.parameters == LLAMA_PARAMETERS  # the index's total size over bf16's 2 bytes
    lm = spec.language_model
    assert (lm.num_hidden_layers, lm.num_key_value_heads, lm.head_dim) == (32, 8, 128)  # head_dim = 4096 / 32
    assert lm.max_position_embeddings == 131072
    assert spec.vision is None and spec.reasoning_parser is None and spec.thinking is None
    assert not spec.trust_remote_code
    assert spec.model_id == str(folder.resolve()) and spec.served_model_name == "llama-3.1-8b"
    assert spec.name == "Llama-3.1-8B"


def test_qwen3_from_a_header_only_safetensors_file(tmp_path: Path) -> None:
    tensors = {
        "model.embed_tokens.weight": ("BF16", [151936, 1024]),
        "model.layers.0.self_attn.q_proj.weight": ("BF16", [2048, 1024]),
        "model.norm.weight": ("F32", [1024]),
    }
    folder = model_folder(tmp_path, "Qwen3-0.6B", QWEN3_CONFIG, tensors=tensors, template=THINK_TEMPLATE)
    spec = spec_from_folder(folder)
    assert spec.parameters == 151936 * 1024 + 2048 * 1024 + 1024  # elements, whatever each tensor's dtype
    assert spec.reasoning_parser == "qwen3"  # its chat template opens a <think> block
    assert spec.thinking is None  # no R-4B-style modes


def test_a_qwen3_without_a_think_block_gets_no_reasoning_parser(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "q", QWEN3_CONFIG, parameters=600_000_000, template=PLAIN_TEMPLATE)
    assert spec_from_folder(folder).reasoning_parser is None


def test_shards_are_summed(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "m", LLAMA_CONFIG)
    write_safetensors_header(folder / "model-00001-of-00002.safetensors", {"a": ("BF16", [10, 10])})
    write_safetensors_header(folder / "model-00002-of-00002.safetensors", {"b": ("F16", [5])})
    assert spec_from_folder(folder).parameters == 105


def test_qwen3_vl_folder_matches_its_spec_file(tmp_path: Path) -> None:
    folder = model_folder(
        tmp_path,
        "Qwen3-VL-4B-Thinking",
        QWEN3_VL_CONFIG,
        parameters=QWEN3_VL_PARAMETERS,
        template=THINK_TEMPLATE,
        processor=QWEN3_VL_PROCESSOR,
    )
    read = spec_from_folder(folder)
    spec = named_spec("qwen3-vl-4b-thinking")
    assert read.language_model == spec.language_model
    assert read.parameters == spec.parameters
    assert read.vision is not None and spec.vision is not None
    for field in ("one_tile_image_tokens", "max_image_tokens", "largest_profiled_image_tokens", "output_width_factor"):
        assert getattr(read.vision, field) == getattr(spec.vision, field), field
    assert (read.vision.one_tile_image_tokens, read.vision.profiled_image_tokens) == (64, 16384)
    assert read.vision.output_width_factor == 4  # merger + 3 deepstack levels
    assert read.reasoning_parser == spec.reasoning_parser == "deepseek_r1"
    assert read.trust_remote_code is spec.trust_remote_code is False
    assert read.architecture == spec.architecture


def test_r4b_folder_counts_image_tokens_as_vllm_does(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "R-4B", R4B_CONFIG, parameters=4_820_000_000, template=THINK_TEMPLATE)
    spec = spec_from_folder(folder)
    default = model_spec()
    assert spec.vision is not None and default.vision is not None
    assert spec.vision.one_tile_image_tokens == default.vision.one_tile_image_tokens == 1485
    assert spec.vision.profiled_image_tokens == default.vision.profiled_image_tokens == 27135
    assert spec.language_model.max_position_embeddings == default.language_model.max_position_embeddings
    assert spec.trust_remote_code and spec.reasoning_parser == "qwen3"
    assert spec.thinking == default.thinking  # R-4B's auto/long/short modes


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [(384, 384, 1485), (2304, 2304, 27135), (1920, 1080, 10929)],
)
def test_llava_next_image_tokens(width: int, height: int, tokens: int) -> None:
    assert llava_next_image_tokens(width, height, 384, 14, ONEVISION_PINPOINTS) == tokens


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**LLAMA_CONFIG, "architectures": ["MambaForCausalLM"]}, "architecture MambaForCausalLM is not one"),
        ({k: v for k, v in LLAMA_CONFIG.items() if k != "architectures"}, "architecture (none in config.json)"),
        ({**LLAMA_CONFIG, "num_local_experts": 8}, "mixture-of-experts"),
        ({**LLAMA_CONFIG, "quantization_config": {"quant_method": "awq"}}, "quantized checkpoint (awq)"),
        ({k: v for k, v in LLAMA_CONFIG.items() if k != "vocab_size"}, "no positive integer 'vocab_size'"),
        ({**LLAMA_CONFIG, "sliding_window": 4096}, "sliding-window attention (window 4096)"),
    ],
)
def test_what_cannot_be_modelled_is_refused(tmp_path: Path, config: dict, message: str) -> None:
    folder = model_folder(tmp_path, "m", config, parameters=1_000_000)
    with pytest.raises(UsageError, match="^--model .*" + message.replace("(", r"\(").replace(")", r"\)")) as err:
        spec_from_folder(folder)
    assert err.value.exit_code == ExitCode.USAGE


def test_unknown_architecture_names_what_is_modelled(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "m", {**LLAMA_CONFIG, "architectures": ["MambaForCausalLM"]}, parameters=1)
    with pytest.raises(UsageError) as err:
        spec_from_folder(folder)
    assert "LlamaForCausalLM" in err.value.message and "Qwen3VLForConditionalGeneration" in err.value.message
    assert "_architectures.yaml" in (err.value.fix or "")


def test_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no config\.json"):
        spec_from_folder(tmp_path / "empty")
    no_weights = model_folder(tmp_path, "w", LLAMA_CONFIG)
    with pytest.raises(UsageError, match=r"no weights \(model.safetensors.index.json or \*.safetensors\)"):
        spec_from_folder(no_weights)
    vl = model_folder(tmp_path, "vl", QWEN3_VL_CONFIG, parameters=QWEN3_VL_PARAMETERS)
    with pytest.raises(UsageError, match=r"no preprocessor_config\.json"):
        spec_from_folder(vl)


def test_a_file_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(UsageError, match="not a safetensors file"):
        safetensors_parameters(bad)


def test_resolve_model_by_name_id_folder_or_refusal(tmp_path: Path) -> None:
    assert resolve_model(None) is model_spec()
    assert resolve_model("qwen3-vl-4b-thinking").model_id == "Qwen/Qwen3-VL-4B-Thinking"
    assert resolve_model("Qwen/Qwen3-VL-4B-Thinking").name == "Qwen3-VL-4B-Thinking"
    assert resolve_model("YannQi/R-4B") is model_spec()
    folder = model_folder(tmp_path, "llama", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    assert resolve_model(str(folder)).architecture == "LlamaForCausalLM"
    with pytest.raises(UsageError, match="neither a folder nor a model the planner knows") as err:
        resolve_model("org/unknown-model")
    assert "qwen3-vl-4b-thinking" in err.value.message
    with pytest.raises(UsageError, match="no such folder"):
        resolve_model(str(tmp_path / "missing"))


def test_mistral_s_sliding_window_is_planned_as_full_attention(tmp_path: Path) -> None:
    config = {**LLAMA_CONFIG, "architectures": ["MistralForCausalLM"], "sliding_window": 4096}
    assert spec_from_folder(model_folder(tmp_path, "m", config, parameters=7_000_000_000)).parameters == 7_000_000_000
    qwen2 = {**LLAMA_CONFIG, "architectures": ["Qwen2ForCausalLM"], "sliding_window": 4096, "use_sliding_window": False}
    assert spec_from_folder(model_folder(tmp_path, "q", qwen2, parameters=1)).architecture == "Qwen2ForCausalLM"
