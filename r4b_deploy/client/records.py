"""The per-request record: the only contract between load generation and metrics.

A failed request is recorded (success=False, error_kind, error), never raised. Times are in
seconds, measured with time.perf_counter(); `start_s` is relative to the run's start.
Token counts come from the server (usage, or /tokenize of the split text), never from a
client-side tokenizer, and agree with the text received (client/stream.py token_split).

A long `bench --duration` run keeps one record per request until its level's metrics are
computed, so a record is small: a slots dataclass (no per-instance dict) whose ITLs are an
`array("d")` from the load generator (8 bytes a gap, not a float object each). Measured
(tracemalloc, 10,000 requests of 16 tokens against scripts/zero_work_server.py): 2.7 KB a
request with a pydantic record, 1.0 KB now; a 60,000-request run peaked at 269 MB RSS before,
178 MB after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

ErrorKind = Literal[
    "connection",  # refused, reset, DNS
    "timeout",  # no answer (or no next chunk) within the request timeout
    "http_401",  # wrong or missing API key
    "http_404",  # unknown model or route
    "http_429",  # rate limited
    "http_4xx",
    "http_5xx",
    "stream",  # connection dropped mid-stream, malformed SSE, error event in the stream
    "protocol",  # a 200 whose body is not what the OpenAI API promises
]


@dataclasses.dataclass(slots=True, kw_only=True)
class RequestRecord:
    success: bool
    error_kind: ErrorKind | None = None
    error: str = ""
    status_code: int | None = None
    workload: str = "text"  # "text" or "image"
    mode: str | None = None  # thinking_mode sent (None: none sent)
    start_s: float = 0.0
    latency_s: float = 0.0  # end-to-end
    ttft_s: float | None = None  # first token of any kind (reasoning or answer)
    first_answer_token_s: float | None = None  # first answer token (after </think>)
    itl_s: Sequence[float] = ()  # gaps between streamed chunks after the first (array("d") from bench)
    prompt_tokens: int | None = None  # usage.prompt_tokens
    output_tokens: int | None = None  # usage.completion_tokens
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None
    finish_reason: str | None = None
    thought: bool | None = None  # did the reply contain reasoning (auto mode: which way it went)
    truncated_reasoning: bool = False  # cut off while thinking: "length" inside the think block, no answer
    token_split_source: str | None = None  # "usage", "text" or "tokenize" (None: unknown)
    split_adjusted: bool = False  # usage's reasoning_tokens contradicted the text received
    reasoning_path: str | None = None  # "reasoning", "reasoning_content", "think_tags" (None: no reasoning)

    def replace(self, **changes: Any) -> RequestRecord:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values (the detailed bench JSON's `records`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["itl_s"] = list(self.itl_s)
        return out
