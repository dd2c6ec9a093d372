"""The benchmark's result: one object that the JSON, Markdown and chart writers all render."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from r4b_deploy.bench.metrics import LevelMetrics
from r4b_deploy.bench.schedule import LoadLevel
from r4b_deploy.client.records import RequestRecord

BACKEND = "openai-chat"  # vLLM's name for the endpoint this benchmark drives


class LevelResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    load: LoadLevel
    label: str
    mode: str = ""  # the --mode this level ran: one thinking mode, or "mix" ("": not recorded)
    metrics: LevelMetrics
    client_cpu_s: float  # this process's CPU time during the load phase
    client_cpu_fraction: float  # of one core: near 1.0 means the client may be the bottleneck
    tokenize_calls: int = 0  # answers counted with /tokenize after the load phase
    # The raw records: kept for the detailed JSON, left out of the default dump (can be large).
    # Not validated: they are the load generator's own, and copying 100k of them costs.
    records: SkipValidation[list[RequestRecord]] = Field(default_factory=list, exclude=True)


class SloResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    gate: str  # as the user wrote it, normalised: "p95_ttft_ms <= 500"
    metric: str
    op: str
    threshold: float
    level: str
    value: float | None
    passed: bool
    mode: str | None = None  # a per-mode gate's thinking mode


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

    @property
    def slo_passed(self) -> bool:
        return all(s.passed for s in self.slo)
