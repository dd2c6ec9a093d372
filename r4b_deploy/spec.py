"""Load the model spec (profiles/model.yaml): the single source of R-4B's numbers."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from r4b_deploy.datafile import StrictModel as _Strict
from r4b_deploy.datafile import load_data_file
from r4b_deploy.paths import profiles_dir


class LanguageModelSpec(_Strict):
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)


class VisionSpec(_Strict):
    image_size_px: int = Field(gt=0)
    patch_size_px: int = Field(gt=0)
    tokens_per_tile: int = Field(gt=0)
    one_tile_image_tokens: int = Field(gt=0)
    max_image_tokens: int = Field(gt=0)
    # The one image vLLM profiles at start-up (its largest image_grid_pinpoints entry); 0: max_image_tokens.
    largest_profiled_image_tokens: int = Field(default=0, ge=0)
    parameters: int = Field(gt=0)

    @property
    def profiled_image_tokens(self) -> int:
        return self.largest_profiled_image_tokens or self.max_image_tokens


class ThinkingSpec(_Strict):
    modes: list[str]
    default_mode: str
    request_field: str
    kwarg: str
    open_tag: str
    close_tag: str
    mode_extra_kwargs: dict[str, dict[str, bool | str | int]] = Field(default_factory=dict)
    reasoning_parser: str | None = None
    prompt_opens_block: list[str] = Field(default_factory=list)
    prompt_closes_block: list[str] = Field(default_factory=list)

    def template_kwargs(self, mode: str | None) -> dict[str, object]:
        """The chat_template_kwargs that select `mode` (None: send nothing, the model's default)."""
        if mode is None:
            return {}
        return {self.kwarg: mode, **self.mode_extra_kwargs.get(mode, {})}


class ModelSpec(_Strict):
    model_id: str
    served_model_name: str
    architecture: str
    min_vllm_version: str
    trust_remote_code: bool
    parameters: int = Field(gt=0)
    weight_bytes_per_param: dict[str, int]
    language_model: LanguageModelSpec
    vision: VisionSpec
    kv_cache_bytes_per_element: dict[str, int]
    thinking: ThinkingSpec
    min_compute_capability_bf16: str


def load_model_spec_file(path: Path) -> ModelSpec:
    return load_data_file(ModelSpec, path, "the model spec")


@lru_cache(maxsize=1)
def model_spec() -> ModelSpec:
    """The packaged R-4B spec, read once."""
    return load_model_spec_file(profiles_dir() / "model.yaml")
