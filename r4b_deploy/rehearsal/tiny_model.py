"""Build a tiny random-weight model with R-4B's architecture, for serving on vLLM's CPU build.

    python tiny_model.py OUT_DIR

Run by a python that has torch, transformers and tokenizers (the rehearsal venv, or the image's
venv during a Docker build); r4b_deploy itself need not be importable. Nothing is downloaded.

The model is what vLLM's RVL code path (R-4B) loads: `RForConditionalGeneration` over a SigLIP
vision tower (32 px tiles, 8 px patches) and a tiny Qwen3 (hidden 128, head_dim 32, which vLLM's
CPU attention accepts), tensors named as the published checkpoint names them, with the
projector's `pre_norm`. A byte-level BPE tokenizer trained here on a fixed text and a ChatML
template honouring `thinking_mode` make each thinking mode a different prompt. Seeded: two
builds are byte-identical. Random weights answer gibberish: it checks protocol, not answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = 0
ARCHITECTURE = "RForConditionalGeneration"  # R-4B's, as profiles/model.yaml names it

# R-4B's thinking switch (profiles/model.yaml `thinking:`; a unit test keeps these equal to it).
THINKING_KWARG = "thinking_mode"
THINKING_MODES = ("auto", "long", "short")
DEFAULT_THINKING_MODE = "auto"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END, THINK_OPEN, THINK_CLOSE, IMAGE_TOKEN, VIDEO_TOKEN)
BPE_VOCAB_SIZE = 512
VOCAB_MULTIPLE = 64  # pad the embedding rows, as real checkpoints do
MAX_POSITIONS = 4096

# Tiny Qwen3: head_dim 32 is one of the sizes vLLM's CPU attention backend supports.
TEXT = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
}
# Tiny SigLIP: a 32 px tile in 8 px patches is 4 x 4 = 16 tokens per tile.
VISION = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
    "num_channels": 3,
}
TILE_PX = VISION["image_size"]
GRID_PINPOINTS = [[TILE_PX, TILE_PX], [TILE_PX, 2 * TILE_PX], [2 * TILE_PX, TILE_PX], [2 * TILE_PX, 2 * TILE_PX]]

# ChatML as Qwen3 and R-4B write it. Content may be a string or a list of parts (text, image).
# thinking_mode: auto lets the model decide (no prefix), long opens a think block, short
# closes an empty one so the model answers at once.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '" + IM_START + "' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] in ['image', 'image_url'] -%}{{- '" + IMAGE_TOKEN + "\\n' -}}"
    "{%- elif part['type'] in ['video', 'video_url'] -%}{{- '" + VIDEO_TOKEN + "\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '" + IM_END + "\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '" + IM_START + "assistant\\n' -}}"
    "{%- set mode = " + THINKING_KWARG + " | default('" + DEFAULT_THINKING_MODE + "') -%}"
    "{%- if mode == 'short' -%}{{- '" + THINK_OPEN + "\\n\\n" + THINK_CLOSE + "\\n\\n' -}}"
    "{%- elif mode == 'long' -%}{{- '" + THINK_OPEN + "\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# What the tokenizer learns its merges from: the words the tests and a chat are made of.
TRAINING_TEXT = (
    "You are a helpful assistant. Hello world! Hello, how are you today? "
    "What is in this image? Describe the picture in one sentence. A red square on a white page. "
    "R-4B is a multimodal model that thinks before it answers when the question needs it: "
    "auto thinking, long thinking and short thinking. Please explain step by step. "
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 100 1000. "
    "Tell me a story about a cat, a dog and a window. user assistant system "
    "def main(): return 42\n"
) * 16


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([TRAINING_TEXT], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (PAD_TOKEN, IM_END)],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = MAX_POSITIONS
    return tokenizer


def published_name(key: str) -> str:
    """transformers' save names -> the layout R-4B's checkpoint uses (the one vLLM's loader maps)."""
    renames = (
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
    )
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old) :]
    if key == "image_newline":
        return "model.image_newline"
    if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "model.vision_tower.vision_model." + key[len("vision_tower.") :]
    if key.startswith("vision_tower.vision_model."):
        return "model." + key
    return key


PUBLISHED_PREFIXES = (
    "model.language_model.",
    "model.vision_tower.vision_model.",
    "model.multi_modal_projector.",
    "model.image_newline",
    "lm_head.",
)


def build(out_dir: Path) -> dict[str, object]:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen3Config,
        SiglipVisionConfig,
    )

    torch.manual_seed(SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    vocab_size = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)

    text_config = Qwen3Config(
        vocab_size=vocab_size,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        **TEXT,
    )
    vision_config = SiglipVisionConfig(vision_use_head=False, **VISION)
    # R-4B's config is LLaVA-OneVision's shape (anyres tiles, full feature select) under its own
    # architecture name; vLLM dispatches on `architectures`.
    config = LlavaOnevisionConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        video_token_index=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=GRID_PINPOINTS,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )
    model = LlavaOnevisionForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(out_dir)

    weights_path = out_dir / "model.safetensors"
    tensors = {published_name(k): v for k, v in load_file(weights_path).items()}
    unexpected = sorted(k for k in tensors if not k.startswith(PUBLISHED_PREFIXES))
    if unexpected:
        raise SystemExit(f"tiny_model: tensors outside R-4B's layout: {unexpected[:5]}")
    # R-4B's projector normalizes the vision features first: LayerNorm -> linear -> GELU -> linear.
    tensors["model.multi_modal_projector.pre_norm.weight"] = torch.ones(VISION["hidden_size"], dtype=torch.bfloat16)
    tensors["model.multi_modal_projector.pre_norm.bias"] = torch.zeros(VISION["hidden_size"], dtype=torch.bfloat16)
    save_file(dict(sorted(tensors.items())), weights_path, metadata={"format": "pt"})

    config_path = out_dir / "config.json"
    config_data = json.loads(config_path.read_text())
    config_data["architectures"] = [ARCHITECTURE]
    config_path.write_text(json.dumps(config_data, indent=2, sort_keys=True) + "\n")

    # vLLM's RVL path processes images with LLaVA-NeXT's processor, which needs no video
    # processor (and so no working torchvision ops).
    image_processor = LlavaNextImageProcessor(
        size={"height": TILE_PX, "width": TILE_PX},
        crop_size={"height": TILE_PX, "width": TILE_PX},
        image_grid_pinpoints=GRID_PINPOINTS,
        do_pad=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=VISION["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=0,
    )
    processor.save_pretrained(out_dir)
    (out_dir / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [eos_id], "pad_token_id": pad_id}, indent=2, sort_keys=True) + "\n"
    )
    return {
        "out_dir": str(out_dir),
        "vocab_size": vocab_size,
        "parameters": sum(p.numel() for p in model.parameters()) + 2 * VISION["hidden_size"],
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python tiny_model.py OUT_DIR", file=sys.stderr)
        return 2
    summary = build(Path(args[0]))
    print("tiny_model: " + json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
