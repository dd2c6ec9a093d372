"""Read a model folder (`--model DIR`): its Hugging Face config.json and the size of its
safetensors weights become a `ModelSpec`, the planner's one input shape.

The weights' size comes from `model.safetensors.index.json` (`metadata.total_size`) or, without
one, from the safetensors headers themselves (8-byte little-endian length, then JSON with each
tensor's dtype and shape): nothing is loaded. Which architectures the planner can model, and how
their image tokens are counted, is data: profiles/models/_architectures.yaml.
"""

from __future__ import annotations

import json
import math
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from r4b_deploy.datafile import StrictModel as _Strict
from r4b_deploy.datafile import load_data_file
from r4b_deploy.errors import UsageError
from r4b_deploy.paths import profiles_dir
from r4b_deploy.spec import (
    DEFAULT_SPEC_FILE,
    MODELS_DIR_NAME,
    LanguageModelSpec,
    ModelSpec,
    VisionSpec,
    model_spec,
    named_spec,
)

ARCHITECTURES_FILE = "_architectures.yaml"
CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"
SAFETENSORS_HEADER_LENGTH_BYTES = 8  # little-endian u64, then that many bytes of JSON
MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024**2  # safetensors' own limit: a larger one is not a header
# Bytes per element of each safetensors dtype (the format's spec) and of config.json's torch_dtype.
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
TORCH_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
THINK_OPEN_TAG = "<think>"
_SERVED_NAME_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_FIX = "plan a known model by name (profiles/models), or a folder of a dense architecture listed in "
_FIX += f"profiles/models/{ARCHITECTURES_FILE}"


class Architecture(_Strict):
    text_config: str | None = None
    vision: Literal["llava_next", "qwen_vl"] | None = None
    trust_remote_code: bool = False
    reasoning_parser: str | None = None
    thinking_modes_of: str | None = None
    min_vllm_version: str
    sliding_window_ok: bool = False


class Architectures(_Strict):
    architectures: dict[str, Architecture]
    planned_image_px: tuple[int, int] = Field(description="width, height")


@lru_cache(maxsize=1)
def architectures() -> Architectures:
    return load_data_file(Architectures, profiles_dir() / MODELS_DIR_NAME / ARCHITECTURES_FILE, "the architectures")


def spec_from_folder(folder: Path) -> ModelSpec:
    """The folder's model as a ModelSpec; UsageError saying what is missing when it cannot be planned."""
    folder = folder.resolve()
    config = _read_json(folder / CONFIG_NAME, "the model's config.json")
    names = config.get("architectures") or []
    known = architectures().architectures
    arch_name = names[0] if names else None
    if arch_name not in known:
        raise UsageError(
            f"--model {folder}: architecture {arch_name or '(none in config.json)'} is not one the planner models "
            f"(it models {', '.join(known)}): its memory terms are unknown",
            fix=_FIX,
        )
    arch = known[arch_name]
    if "quantization_config" in config:
        method = config["quantization_config"].get("quant_method", "?")
        raise UsageError(
            f"--model {folder}: a quantized checkpoint ({method}); the planner models bf16/fp16 weights only",
            fix="plan the unquantized checkpoint",
        )
    text = config.get(arch.text_config, {}) if arch.text_config else config
    for moe_key in ("num_experts", "num_local_experts"):
        if text.get(moe_key):
            raise UsageError(
                f"--model {folder}: a mixture-of-experts model ({moe_key}); the planner models dense ones", fix=_FIX
            )
    window = text.get("sliding_window") if text.get("use_sliding_window", True) else None
    if window and not arch.sliding_window_ok:
        raise UsageError(
            f"--model {folder}: sliding-window attention (window {window}) in a {arch_name}; the planner does "
            "not model it for this architecture",
            fix=_FIX,
        )
    lm = _language_model(folder, text)
    parameters = _parameters(folder, config, text)
    default = model_spec()
    vision = _vision(folder, config, arch, lm) if arch.vision else None
    with_think = arch.reasoning_parser is not None and _template_opens_think(folder)
    thinking = None
    if arch.thinking_modes_of is not None and with_think:
        of = arch.thinking_modes_of
        thinking = (default if of == DEFAULT_SPEC_FILE else named_spec(of)).thinking
    return ModelSpec(
        name=folder.name,
        model_id=str(folder),
        served_model_name=_SERVED_NAME_UNSAFE.sub("-", folder.name.casefold())[:64].strip("-._") or "model",
        architecture=arch_name,
        min_vllm_version=arch.min_vllm_version,
        trust_remote_code=arch.trust_remote_code,
        parameters=parameters,
        weight_bytes_per_param=default.weight_bytes_per_param,
        language_model=lm,
        vision=vision,
        kv_cache_bytes_per_element=default.kv_cache_bytes_per_element,
        reasoning_parser=arch.reasoning_parser if with_think else None,
        thinking=thinking,
        min_compute_capability_bf16=default.min_compute_capability_bf16,
        sources=[str(folder / CONFIG_NAME)],
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"--model {path.parent}: no {path.name} ({what})",
            fix="give the folder a Hugging Face download wrote (config.json and *.safetensors)",
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--model {path.parent}: cannot read {path.name}: {exc}", fix="check the file") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--model {path.parent}: {path.name} is not a JSON object", fix="check the file")
    return data


def _need(folder: Path, config: dict[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(
            f"--model {folder}: config.json has no positive integer {key!r}; the planner needs it",
            fix="check config.json (a text_config may hold the language model's numbers)",
        )
    return value


def _language_model(folder: Path, text: dict[str, Any]) -> LanguageModelSpec:
    heads = _need(folder, text, "num_attention_heads")
    hidden = _need(folder, text, "hidden_size")
    kv_heads = text.get("num_key_value_heads") or heads  # absent: multi-head attention
    head_dim = text.get("head_dim") or hidden // heads
    return LanguageModelSpec(
        hidden_size=hidden,
        num_hidden_layers=_need(folder, text, "num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=_need(folder, text, "vocab_size"),
        max_position_embeddings=_need(folder, text, "max_position_embeddings"),
    )


def _parameters(folder: Path, config: dict[str, Any], text: dict[str, Any]) -> int:
    """From the index's total size in the checkpoint's dtype, else from the safetensors headers."""
    index = folder / INDEX_NAME
    if index.is_file():
        total = _read_json(index, "the weights index").get("metadata", {}).get("total_size")
        dtype = config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
        if isinstance(total, int) and total > 0 and dtype in TORCH_DTYPE_BYTES:
            return total // TORCH_DTYPE_BYTES[dtype]
        raise UsageError(
            f"--model {folder}: {INDEX_NAME} has no metadata.total_size, or config.json no torch_dtype of "
            f"{', '.join(TORCH_DTYPE_BYTES)}",
            fix="check the files, or remove the index to have the safetensors headers counted",
        )
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise UsageError(
            f"--model {folder}: no weights ({INDEX_NAME} or *.safetensors); the planner sizes the model from them",
            fix="download the weights too (safetensors)",
        )
    return sum(safetensors_parameters(path) for path in shards)


def safetensors_parameters(path: Path) -> int:
    """The elements of every tensor in one safetensors file, read from its header alone."""
    try:
        with path.open("rb") as handle:
            head = handle.read(SAFETENSORS_HEADER_LENGTH_BYTES)
            (length,) = struct.unpack("<Q", head) if len(head) == SAFETENSORS_HEADER_LENGTH_BYTES else (0,)
            if not 0 < length <= MAX_SAFETENSORS_HEADER_BYTES:
                raise ValueError("no safetensors header")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"--model {path.parent}: {path.name} is not a safetensors file: {exc}",
            fix="download that file again (an interrupted download leaves it truncated)",
        ) from exc
    count = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        if tensor.get("dtype") not in SAFETENSORS_DTYPE_BYTES:
            raise UsageError(
                f"--model {path.parent}: {path.name}: tensor {name} has dtype {tensor.get('dtype')!r}",
                fix=f"plan a checkpoint whose tensors are {', '.join(SAFETENSORS_DTYPE_BYTES)}",
            )
        count += math.prod(tensor.get("shape", []))
    return count


def _template_opens_think(folder: Path) -> bool:
    """Whether the chat template has a <think> block (tokenizer_config.json, chat_template.jinja or .json)."""
    texts = []
    for name in ("tokenizer_config.json", "chat_template.json", "chat_template.jinja"):
        path = folder / name
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return any(THINK_OPEN_TAG in text for text in texts)


# ------------------------------------------------------------------------------ image tokens


def _vision(folder: Path, config: dict[str, Any], arch: Architecture, lm: LanguageModelSpec) -> VisionSpec:
    vision = config.get("vision_config") or {}
    width, height = architectures().planned_image_px
    if arch.vision == "llava_next":
        image_size = _need(folder, vision, "image_size")
        patch = _need(folder, vision, "patch_size")
        pinpoints = [tuple(p) for p in config.get("image_grid_pinpoints") or [[image_size, image_size]]]
        largest = max(llava_next_image_tokens(w, h, image_size, patch, pinpoints) for h, w in pinpoints)
        return VisionSpec(
            image_size_px=image_size,
            patch_size_px=patch,
            tokens_per_tile=(image_size // patch) ** 2,
            one_tile_image_tokens=llava_next_image_tokens(image_size, image_size, image_size, patch, pinpoints),
            max_image_tokens=llava_next_image_tokens(width, height, image_size, patch, pinpoints),
            largest_profiled_image_tokens=largest,
        )
    processor = _read_json(folder / "preprocessor_config.json", "the image processor's settings")
    size = processor.get("size") or {}
    min_pixels = size.get("shortest_edge") or processor.get("min_pixels")
    max_pixels = size.get("longest_edge") or processor.get("max_pixels")
    if not isinstance(min_pixels, int) or not isinstance(max_pixels, int):
        raise UsageError(
            f"--model {folder}: preprocessor_config.json has no size.shortest_edge/longest_edge (pixels)",
            fix="check preprocessor_config.json: the image processor's least and most pixels per image",
        )
    factor = _need(folder, vision, "patch_size") * _need(folder, vision, "spatial_merge_size")
    return VisionSpec(
        patch_size_px=vision["patch_size"],
        one_tile_image_tokens=max(1, min_pixels // factor**2),
        max_image_tokens=round(width / factor) * round(height / factor),
        largest_profiled_image_tokens=max_pixels // factor**2,
        output_width_factor=1 + len(vision.get("deepstack_visual_indexes") or []),
    )


def llava_next_image_tokens(
    width: int, height: int, image_size: int, patch: int, pinpoints: list[tuple[int, int]]
) -> int:
    """vLLM's LLaVA-NeXT count (llava_next.py get_num_image_tokens): the base tile, the unpadded
    grid of the best-fitting pinpoint (height, width pairs), and one newline token per row."""
    best_h, best_w = _best_resolution(width, height, pinpoints)
    side = image_size // patch
    rows, cols = side * (best_h // image_size), side * (best_w // image_size)
    if width / height > cols / rows:
        padding = (rows - int(round(height * (cols / width), 7))) // 2
        rows -= 2 * padding
    else:
        padding = (cols - int(round(width * (rows / height), 7))) // 2
        cols -= 2 * padding
    return rows * cols + rows + side * side


def _best_resolution(width: int, height: int, pinpoints: list[tuple[int, int]]) -> tuple[int, int]:
    """LLaVA-NeXT's select_best_resolution: the most effective pixels, then the least waste."""
    best, best_key = pinpoints[0], (-1, 0)
    for pin_h, pin_w in pinpoints:
        scale = min(pin_w / width, pin_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        key = (effective, -(pin_w * pin_h - effective))
        if key > best_key:
            best, best_key = (pin_h, pin_w), key
    return best
