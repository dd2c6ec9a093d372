"""tiny_model.py run as it runs in life: by the CPU venv's python, as a standalone script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from r4b_deploy.rehearsal.cache import STAMP_NAME
from r4b_deploy.rehearsal.vllm_cpu import TINY_MODEL_SCRIPT
from r4b_deploy.spec import model_spec

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

# Read back by the venv's python: tensor names, the chat template per mode, special tokens.
INSPECT = """
import json, sys
from safetensors import safe_open
from transformers import AutoTokenizer
model_dir = sys.argv[1]
tok = AutoTokenizer.from_pretrained(model_dir)
messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello world!"}]
parts = [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "Hi"}]
image = [{"role": "user", "content": parts}]
prompts = {"none": tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)}
for mode in json.loads(sys.argv[2]):
    prompts[mode] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, thinking_mode=mode)
with safe_open(model_dir + "/model.safetensors", "pt") as f:
    keys = sorted(f.keys())
print(json.dumps({
    "prompts": prompts,
    "tokens": {k: len(tok(v)["input_ids"]) for k, v in prompts.items()},
    "image_prompt": tok.apply_chat_template(image, tokenize=False, add_generation_prompt=True),
    "special": {t: tok.convert_tokens_to_ids(t) for t in sys.argv[3:]},
    "unk": tok.unk_token_id,
    "keys": keys,
}))
"""


@pytest.fixture(scope="module")
def inspected(vllm_cpu_venv: Path, tiny_r4b_model: Path) -> dict:
    thinking = model_spec().thinking
    out = subprocess.run(
        [
            str(vllm_cpu_venv / "bin" / "python"),
            "-c",
            INSPECT,
            str(tiny_r4b_model),
            json.dumps(thinking.modes),
            thinking.open_tag,
            thinking.close_tag,
            "<image>",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_each_thinking_mode_changes_the_prompt_as_r4b_does(inspected: dict) -> None:
    open_tag, close_tag = model_spec().thinking.open_tag, model_spec().thinking.close_tag
    prompts, tokens = inspected["prompts"], inspected["tokens"]

    assert prompts["none"] == prompts["auto"]
    assert prompts["long"] == prompts["auto"] + f"{open_tag}\n"
    assert prompts["short"] == prompts["auto"] + f"{open_tag}\n\n{close_tag}\n\n"
    assert tokens["none"] == tokens["auto"] < tokens["long"] < tokens["short"]


def test_think_tags_and_image_token_are_single_tokens(inspected: dict) -> None:
    ids = inspected["special"]
    assert all(isinstance(i, int) and i != inspected["unk"] for i in ids.values())
    assert len(set(ids.values())) == len(ids)
    assert "<image>\nHi" in inspected["image_prompt"]


def test_tensors_use_the_published_layout(inspected: dict) -> None:
    keys = inspected["keys"]
    assert "model.multi_modal_projector.pre_norm.weight" in keys
    assert "lm_head.weight" in keys
    assert any(k.startswith("model.language_model.layers.") for k in keys)
    assert any(k.startswith("model.vision_tower.vision_model.encoder.") for k in keys)
    assert all(
        k.startswith(("model.language_model.", "model.vision_tower.vision_model.", "model.multi_modal_projector."))
        or k in ("model.image_newline", "lm_head.weight")
        for k in keys
    )


def test_config_names_r4b_architecture(tiny_r4b_model: Path) -> None:
    config = json.loads((tiny_r4b_model / "config.json").read_text())
    assert config["architectures"] == [model_spec().architecture]
    assert json.loads((tiny_r4b_model / "processor_config.json").read_text())["processor_class"] == (
        "LlavaNextProcessor"
    )


@pytest.mark.slow
def test_two_builds_are_byte_identical(vllm_cpu_venv: Path, tiny_r4b_model: Path, tmp_path: Path) -> None:
    rebuilt = tmp_path / "again"
    subprocess.run(
        [str(vllm_cpu_venv / "bin" / "python"), str(TINY_MODEL_SCRIPT), str(rebuilt)],
        check=True,
        capture_output=True,
        timeout=600,
    )

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != STAMP_NAME
        }

    assert files(rebuilt) == files(tiny_r4b_model)
