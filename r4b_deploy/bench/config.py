"""What one benchmark run is asked to do: `BenchConfig`, its load levels, request budgets and the
longest it can take (`time_bound_s`), apart from running it (`bench/runner.py`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from r4b_deploy.bench.schedule import LEVEL_MAX_S, LoadLevel, arrival_offsets_s, interarrival_gaps_s, sweep_levels
from r4b_deploy.bench.workload import (
    CALIBRATION_CALLS,
    DEFAULT_IMAGE_SIZE_PX,
    DEFAULT_PROMPT_WORDS,
    ModeChoice,
    WorkloadKind,
    WorkloadSpec,
)
from r4b_deploy.client.wire import REQUEST_TIMEOUT_MAX_S
from r4b_deploy.spec import model_spec

DEFAULT_CONCURRENCIES: tuple[int, ...] = (1, 4, 16, 64)
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TOKENS = 256
DEFAULT_WARMUP_REQUESTS = 4
MIN_REQUESTS_PER_LEVEL = 32
REQUESTS_PER_SLOT = 4  # closed loop: each in-flight slot sends this many requests by default
DEFAULT_RATE_LEVEL_S = 30.0  # open loop: default budget = rate x this many seconds


class BenchConfig(BaseModel):
    """Everything one run needs. The API key is a SecretStr: it never reaches the report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    api_key: SecretStr | None = None
    model: str = Field(default_factory=lambda: model_spec().served_model_name)
    concurrencies: list[int] = []
    request_rates: list[float] = []
    burstiness: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)  # caps the sweep (--max-concurrency or max_num_seqs)
    requests_per_level: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0, le=LEVEL_MAX_S)  # per level; replaces the request budget
    warmup_requests: int = Field(default=DEFAULT_WARMUP_REQUESTS, ge=0)
    workload: WorkloadKind = "text"
    # Swept like the load levels: every level runs once per mode, in this order ("mix": the
    # model's modes in turn within one level). `mode="auto,long"` or a list is accepted too.
    modes: list[ModeChoice] = Field(default_factory=lambda: ["auto"], min_length=1)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, gt=0)
    ignore_eos: bool = False
    temperature: float | None = Field(default=None, ge=0)
    prompt_words: int = Field(default=DEFAULT_PROMPT_WORDS, gt=0)
    image_size_px: tuple[int, int] = DEFAULT_IMAGE_SIZE_PX
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=REQUEST_TIMEOUT_MAX_S)  # per request, in all
    seed: int = 0
    repeat: int = Field(default=1, ge=1)  # each (mode, level) point runs this many times (--repeat)
    # Prompt size in the server's tokens (--input-len): the words per prompt are sized with /tokenize
    # before the load (bench/workload.py calibrate_prompt_words); None: `prompt_words` as given.
    input_len: int | None = Field(default=None, gt=0)
    # Built-in prompt sets (bench/prompts.py), swept as an axis outside the modes: [] the synthetic words.
    prompt_sets: list[str] = []
    dataset: Path | None = None  # --dataset FILE.jsonl: the user's requests replayed (bench/dataset.py)

    @model_validator(mode="before")
    @classmethod
    def _mode_alias(cls, data: Any) -> Any:
        """`mode="long"`, `mode="auto,short"` or `mode=[...]` as `modes`."""
        if isinstance(data, dict) and "mode" in data:
            data = dict(data)
            mode = data.pop("mode")
            data["modes"] = [m.strip() for m in mode.split(",") if m.strip()] if isinstance(mode, str) else mode
        return data

    @field_validator("modes")
    @classmethod
    def _distinct_modes(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))  # a mode named twice is run once

    @field_validator("concurrencies")
    @classmethod
    def _positive_concurrency(cls, v: list[int]) -> list[int]:
        if any(c <= 0 for c in v):
            raise ValueError("concurrency levels must be > 0")
        return v

    @field_validator("request_rates")
    @classmethod
    def _positive_rate(cls, v: list[float]) -> list[float]:
        if any(not r > 0 for r in v):
            raise ValueError("request rates must be > 0 (inf: all at once)")
        return v

    @field_validator("prompt_sets")
    @classmethod
    def _known_prompt_sets(cls, v: list[str]) -> list[str]:
        from r4b_deploy.bench.prompts import PROMPT_SETS

        unknown = [name for name in v if name not in PROMPT_SETS]
        if unknown:
            raise ValueError(f"unknown prompt set {unknown[0]!r} (known: {', '.join(PROMPT_SETS)})")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _one_prompt_source(self) -> BenchConfig:
        """Prompts come from one place: a dataset, a built-in set, or synthetic words (sized or not)."""
        if self.dataset is not None and self.prompt_sets:
            raise ValueError("prompt sets and a dataset exclude each other")
        if self.input_len is not None and (self.dataset is not None or self.prompt_sets or self.workload != "text"):
            raise ValueError("input len sizes the synthetic text prompts: not a dataset, a prompt set or images")
        return self

    def levels(self) -> list[LoadLevel]:
        return sweep_levels(
            self.concurrencies, self.request_rates, self.burstiness, self.max_concurrency, DEFAULT_CONCURRENCIES
        )

    def sweep(self) -> list[tuple[str, LoadLevel]]:
        """Every (mode, level) point, mode by mode: each mode's own latency-throughput curve."""
        levels = self.levels()
        return [(mode, level) for mode in self.modes for level in levels]

    def prompt_axis(self) -> list[str | None]:
        """The prompt sets swept, outermost: each set gets the whole mode × level sweep."""
        return list(self.prompt_sets) or [None]

    def points(self) -> list[tuple[str | None, str, LoadLevel]]:
        """Every (prompt set, mode, level) point of the run, in running order."""
        return [(prompts, mode, level) for prompts in self.prompt_axis() for mode, level in self.sweep()]

    def largest_max_tokens(self) -> int:
        """The largest max_tokens any request asks for (a replayed line may name its own)."""
        lines = [r.max_tokens for r in self.dataset_requests() if r.max_tokens] if self.dataset else []
        return max([self.max_tokens, *lines])

    def dataset_requests(self) -> list:
        from r4b_deploy.bench.dataset import load_dataset_once

        return load_dataset_once(self.dataset) if self.dataset is not None else []

    def workload_label(self) -> str:
        """What the requests were, for the report: the kind and where the prompts came from."""
        if self.dataset is not None:
            return f"dataset {self.dataset.name} ({len(self.dataset_requests())} requests)"
        if self.prompt_sets:
            return f"{self.workload}, prompts {','.join(self.prompt_sets)}"
        if self.input_len is not None and self.workload == "text":
            return f"text, {self.input_len} tokens in"
        return self.workload

    def workload_spec(self, mode: str, prompt_set: str | None = None) -> WorkloadSpec:
        return WorkloadSpec(
            prompt_set=prompt_set,
            text_task=self.input_len is None,
            dataset=self.dataset_requests() if self.dataset is not None else None,
            model=self.model,
            kind=self.workload,
            mode=mode,
            max_tokens=self.max_tokens,
            ignore_eos=self.ignore_eos,
            temperature=self.temperature,
            prompt_words=self.prompt_words,
            image_size_px=self.image_size_px,
            seed=self.seed,
        )

    def level_offsets_s(self, level: LoadLevel) -> list[float]:
        """When each request of an open-loop level leaves (seconds after the level starts)."""
        rate = level.request_rate or math.inf
        budget = self.request_budget(level)
        if budget is not None:
            return arrival_offsets_s(rate, level.burstiness, budget, self.seed)
        import random

        gaps = interarrival_gaps_s(rate, level.burstiness, random.Random(self.seed))
        offsets, t = [], 0.0
        while t < (self.duration_s or 0):
            offsets.append(t)
            t += next(gaps)
        return offsets

    def level_time_bound_s(self, level: LoadLevel) -> float:
        """The longest the load phase of `level` can last, whatever the server does: each request
        has `timeout_s` in all, so a level takes its rounds of in-flight requests times that."""
        from r4b_deploy.client.aio import TOKENIZE_CONCURRENCY

        t = self.timeout_s
        budget = self.request_budget(level)
        if level.kind == "concurrency":
            concurrency = level.concurrency or 1
            load = (self.duration_s + t) if budget is None else math.ceil(budget / concurrency) * t
        else:
            offsets = self.level_offsets_s(level)
            cap = level.max_concurrency
            queued = math.ceil(len(offsets) / cap) * t if cap else t
            load = (offsets[-1] if offsets else 0.0) + queued
        counted = budget if budget is not None else 0  # duration mode: as many as completed (see docstring)
        return load + math.ceil(counted / TOKENIZE_CONCURRENCY) * t

    def time_bound_s(self) -> float:
        """The longest a run can take whatever the server does (a wedged or trickling one included):
        the pre-flight and the warm-up (all at once) one `timeout_s` each, then every level's bound.
        In duration mode the /tokenize counting after a level adds one `timeout_s` per
        TOKENIZE_CONCURRENCY replies it counts (only replies that completed)."""
        preflight_and_warmup = (2 if self.warmup_requests else 1) * self.timeout_s
        levels_s = sum(self.level_time_bound_s(level) for _, level in self.sweep()) * len(self.prompt_axis())
        sizing_s = CALIBRATION_CALLS * len(self.modes) * self.timeout_s if self.input_len is not None else 0.0
        return preflight_and_warmup + sizing_s + self.repeat * levels_s

    def request_budget(self, level: LoadLevel) -> int | None:
        """Requests to send at `level`; None in duration mode (send until the time is up)."""
        if self.duration_s is not None:
            return None
        if self.requests_per_level is not None:
            return self.requests_per_level
        if level.kind == "concurrency":
            return max(MIN_REQUESTS_PER_LEVEL, REQUESTS_PER_SLOT * (level.concurrency or 1))
        if level.request_rate == math.inf:
            return max(MIN_REQUESTS_PER_LEVEL, REQUESTS_PER_SLOT * (level.max_concurrency or 1))
        return max(MIN_REQUESTS_PER_LEVEL, math.ceil((level.request_rate or 0) * DEFAULT_RATE_LEVEL_S))
