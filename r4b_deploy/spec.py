"""Model specs: R-4B's numbers (profiles/model.yaml, the default) and the other models the
planner knows by name (profiles/models/*.yaml). A model folder read from its files
(`r4b_deploy.model_files`) becomes the same `ModelSpec`, so the planner has one input shape."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator

from r4b_deploy.datafile import StrictModel as _Strict
from r4b_deploy.datafile import load_data_file
from r4b_deploy.errors import UsageError
from r4b_deploy.paths import profiles_dir

DEFAULT_SPEC_FILE = "model.yaml"
MODELS_DIR_NAME = "models"  # profiles/models/<name>.yaml: models `--model NAME` plans


class LanguageModelSpec(_Strict):
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)


class VisionSpec(_Strict):
    # How R-4B's LLaVA-style tiling is described; a patch-merging encoder (Qwen3-VL) leaves them out.
    image_size_px: int | None = Field(default=None, gt=0)
    patch_size_px: int = Field(gt=0)
    tokens_per_tile: int | None = Field(default=None, gt=0)
    one_tile_image_tokens: int = Field(gt=0)  # the smallest image's tokens: the least context an image request needs
    max_image_tokens: int = Field(gt=0)  # the worst-case image the tiers plan room for
    # The one image vLLM profiles at start-up (its largest image_grid_pinpoints entry); 0: max_image_tokens.
    largest_profiled_image_tokens: int = Field(default=0, ge=0)
    # The encoder's output per image token, in LM hidden sizes (Qwen3-VL's deepstack adds 3 more).
    output_width_factor: int = Field(default=1, gt=0)
    parameters: int | None = Field(default=None, gt=0)  # the encoder's, counted inside the model's (documentation)

    @property
    def profiled_image_tokens(self) -> int:
        return self.largest_profiled_image_tokens or self.max_image_tokens


class ThinkingSpec(_Strict):
    """R-4B's thinking modes, as the client, smoke checks and benchmark send and read them."""

    modes: list[str]
    default_mode: str
    request_field: str
    kwarg: str
    open_tag: str
    close_tag: str
    mode_extra_kwargs: dict[str, dict[str, bool | str | int]] = Field(default_factory=dict)
    prompt_opens_block: list[str] = Field(default_factory=list)
    prompt_closes_block: list[str] = Field(default_factory=list)

    def template_kwargs(self, mode: str | None) -> dict[str, object]:
        """The chat_template_kwargs that select `mode` (None: send nothing, the model's default)."""
        if mode is None:
            return {}
        return {self.kwarg: mode, **self.mode_extra_kwargs.get(mode, {})}


class ModelSpec(_Strict):
    name: str  # how messages name the model: "R-4B"
    model_id: str  # what vLLM serves: a Hugging Face id, or a model folder's absolute path
    served_model_name: str
    architecture: str
    min_vllm_version: str
    trust_remote_code: bool
    parameters: int = Field(gt=0)
    weight_bytes_per_param: dict[str, int]
    language_model: LanguageModelSpec
    vision: VisionSpec | None = None  # None: a text-only model (no images, no encoder)
    kv_cache_bytes_per_element: dict[str, int]
    reasoning_parser: str | None = None  # vLLM's --reasoning-parser; None: the model does not reason in a block
    thinking: ThinkingSpec | None = None  # R-4B's selectable thinking modes; None: the model has none
    min_compute_capability_bf16: str
    sources: list[str] = Field(default_factory=list)  # where the numbers were read

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        lm = self.language_model
        if lm.num_attention_heads % lm.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads {lm.num_key_value_heads} does not divide num_attention_heads "
                f"{lm.num_attention_heads}"
            )
        return self

    @property
    def thinking_modes(self) -> list[str]:
        return list(self.thinking.modes) if self.thinking else []


def load_model_spec_file(path: Path) -> ModelSpec:
    return load_data_file(ModelSpec, path, "the model spec")


@lru_cache(maxsize=1)
def model_spec() -> ModelSpec:
    """The packaged R-4B spec, read once: the default model."""
    return load_model_spec_file(profiles_dir() / DEFAULT_SPEC_FILE)


def spec_names() -> list[str]:
    """The names `--model NAME` takes: profiles/models/*.yaml (a leading `_` marks other data)."""
    return sorted(p.stem for p in (profiles_dir() / MODELS_DIR_NAME).glob("*.yaml") if not p.stem.startswith("_"))


@lru_cache(maxsize=16)
def named_spec(name: str) -> ModelSpec:
    """profiles/models/<name>.yaml."""
    return load_model_spec_file(profiles_dir() / MODELS_DIR_NAME / f"{name}.yaml")


def resolve_model(value: str | None) -> ModelSpec:
    """`--model VALUE`: None the default (R-4B); a folder holding config.json, read from its files;
    a spec name (profiles/models); or the Hugging Face id or served name of a known spec."""
    if value is None:
        return model_spec()
    folder = Path(value).expanduser()
    if folder.is_dir():
        from r4b_deploy.model_files import spec_from_folder

        return spec_from_folder(folder)
    if value in spec_names():
        return named_spec(value)
    known = [model_spec(), *(named_spec(n) for n in spec_names())]
    for spec in known:
        if value.casefold() in (spec.model_id.casefold(), spec.served_model_name.casefold()):
            return spec
    names = ", ".join(spec_names())
    what = "no such folder" if value.startswith((".", "~", "/")) else "neither a folder nor a model the planner knows"
    raise UsageError(
        f"--model {value}: {what} (known: {names}, {model_spec().model_id})",
        fix="give one of those names, or a folder holding the model's config.json and safetensors weights "
        "(e.g. `huggingface-cli download ID --local-dir DIR`, then --model DIR)",
    )
