"""Tiny Hugging Face model folders written by the tests: config.json, a weights index or a
header-only safetensors file, and the tokenizer/processor files the reader looks at."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}
LLAMA_PARAMETERS = 8_030_261_248  # Llama-3.1-8B

QWEN3_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "torch_dtype": "bfloat16",
}

# Qwen/Qwen3-VL-4B-Thinking's published config.json and preprocessor_config.json, the numbers that matter.
QWEN3_VL_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "text_config": {
        "hidden_size": 2560,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 262144,
        "dtype": "bfloat16",
    },
    "vision_config": {
        "patch_size": 16,
        "spatial_merge_size": 2,
        "out_hidden_size": 2560,
        "deepstack_visual_indexes": [5, 11, 17],
    },
    "torch_dtype": "bfloat16",
}
QWEN3_VL_PROCESSOR: dict[str, Any] = {"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16}
QWEN3_VL_PARAMETERS = 4_437_815_808

# R-4B's shape: Qwen3-4B text, SigLIP 384/14 vision, OneVision's pinpoints (384 px x 1..6 tiles).
R4B_CONFIG: dict[str, Any] = {
    "architectures": ["RForConditionalGeneration"],
    "text_config": {**QWEN3_VL_CONFIG["text_config"], "max_position_embeddings": 40960},
    "vision_config": {"image_size": 384, "patch_size": 14},
    "image_grid_pinpoints": [[384 * h, 384 * w] for h in range(1, 7) for w in range(1, 7)],
    "torch_dtype": "bfloat16",
}

THINK_TEMPLATE = {"chat_template": "{{ '<|im_start|>assistant\\n<think>\\n' }}"}
PLAIN_TEMPLATE = {"chat_template": "{{ '<|im_start|>assistant\\n' }}"}


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def model_folder(
    root: Path,
    name: str,
    config: dict[str, Any],
    *,
    parameters: int | None = None,
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    template: dict[str, Any] | None = None,
    processor: dict[str, Any] | None = None,
) -> Path:
    """A folder with config.json and either an index (`parameters` in bf16) or a header-only
    model.safetensors listing `tensors` (name -> (dtype, shape))."""
    folder = root / name
    folder.mkdir(parents=True)
    write_json(folder / "config.json", config)
    if parameters is not None:
        index = {"metadata": {"total_size": 2 * parameters}, "weight_map": {"x": "model-00001-of-00001.safetensors"}}
        write_json(folder / "model.safetensors.index.json", index)
    if tensors is not None:
        write_safetensors_header(folder / "model.safetensors", tensors)
    if template is not None:
        write_json(folder / "tokenizer_config.json", template)
    if processor is not None:
        write_json(folder / "preprocessor_config.json", processor)
    return folder


def write_safetensors_header(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """The safetensors layout without the data: 8-byte little-endian length, then the JSON header."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for name, (dtype, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]}
    data = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    return path
