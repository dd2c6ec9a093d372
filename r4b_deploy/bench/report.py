"""The benchmark's result: one object that the JSON, Markdown and chart writers all render."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, model_validator

from r4b_deploy.bench.confidence import RunSlice
from r4b_deploy.bench.metrics import LevelMetrics
from r4b_deploy.bench.schedule import LoadLevel
from r4b_deploy.client.records import RequestRecord

BACKEND = "openai-chat"  # vLLM's name for the endpoint this benchmark drives


class LevelResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    load: LoadLevel
    label: str
    mode: str = ""  # the --mode this level ran: one thinking mode, or "mix" ("": not recorded)
    prompt_set: str | None = None  # the --prompts set this level drew from (None: synthetic or a dataset)
    metrics: LevelMetrics
    client_cpu_s: float  # this process's CPU time during the load phase
    client_cpu_fraction: float  # of one core: near 1.0 means the client may be the bottleneck
    tokenize_calls: int = 0  # answers counted with /tokenize after the load phase
    # The raw records: kept for the detailed JSON, left out of the default dump (can be large).
    # Not validated: they are the load generator's own, and copying 100k of them costs.
    records: SkipValidation[list[RequestRecord]] = Field(default_factory=list, exclude=True)
    # `--repeat N`: the level ran N times; `records` holds the runs one after another, in this order.
    runs: list[RunSlice] = []


class SloResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    gate: str  # as the user wrote it, normalised: "p95_ttft_ms <= 500"
    metric: str
    op: str
    threshold: float
    level: str
    value: float | None
    passed: bool  # verdict == "pass"
    mode: str | None = None  # a per-mode gate's thinking mode
    # "pass": the whole interval meets the gate; "fail": the whole interval breaks it; else inconclusive.
    verdict: Literal["pass", "fail", "inconclusive"] = "pass"
    ci_low: float | None = None  # the value's confidence interval (bench/confidence.py)
    ci_high: float | None = None
    confidence: float | None = None
    runs: int = 1  # runs the level's figures came from (--repeat)
    runs_to_decide: int | None = None  # inconclusive: about how many runs in all would decide it
    baseline: float | None = None  # a regression gate's figure in the earlier run (--baseline)

    @model_validator(mode="before")
    @classmethod
    def _verdict_from_passed(cls, data: object) -> object:
        """A result written before verdicts existed (or without an interval) reads as pass/fail."""
        if isinstance(data, dict) and data.get("verdict") is None and "passed" in data:
            data = {**data, "verdict": "pass" if data["passed"] else "fail"}
        return data


class BenchReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    date: str  # vLLM's format, %Y%m%d-%H%M%S
    backend: str = BACKEND
    base_url: str
    model_id: str  # the served model name the requests named
    workload: str
    mode: str
    max_tokens: int
    ignore_eos: bool
    seed: int
    timeout_s: float
    warmup_requests: int
    warmup_failed: int
    levels: list[LevelResult]
    warnings: list[str] = []
    slo: list[SloResult] = []

    repeat: int = 1  # runs per level (--repeat)

    @property
    def slo_passed(self) -> bool:
        return all(s.passed for s in self.slo)

    @property
    def slo_failed(self) -> bool:
        """A gate broken beyond noise (exit 1); gates neither held nor broken are `inconclusive`."""
        return any(s.verdict == "fail" for s in self.slo)
