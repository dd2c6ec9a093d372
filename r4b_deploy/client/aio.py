"""Async streaming chat for the load generator: one request in, one RequestRecord out.

On a small box the client's CPU is taken from the server it measures, so this path is kept
light: bodies arrive pre-serialised, SSE events are parsed by the shared incremental parser,
and only the first answer token and token counts are worked out while streaming. Nothing here
raises for a failed request: connection, timeout, HTTP status and stream faults become an
`error_kind` on the record.

Why aiohttp (measured on this project's 2-core machine, client pinned to one core, the
zero-work server of scripts/zero_work_server.py on the other, 16-token streams, the same SSE
split + json.loads per event in both loops):

| client | concurrency 8 | concurrency 64 | client CPU per request |
|---|---|---|---|
| aiohttp 3.14 | 1,130–1,390 req/s | 930–1,470 req/s | 435–525 µs |
| httpx 0.28 | 250–435 req/s | 74–137 req/s | 2,100–7,100 µs |

httpx costs 4–15x more CPU per request and gets worse with more connections (its pool is
searched per request), so aiohttp it is. The whole load generator built on it (this module,
the shared SSE parser and reasoning splitter, records) sustained 1,630–2,090 req/s against the
same zero-work server at concurrency 64 (`vllm bench serve` beside it: 1,150–1,320 req/s;
scripts/bench_compare.py, 3 rounds, on a machine shared with other work: ranges, not points).

Timings follow `vllm bench serve`: TTFT is the first chunk carrying text (reasoning or
answer), ITL the gaps between text chunks (per chunk, as vLLM's: one token per chunk unless
the server batches), latency the arrival of the last text chunk; `usage` gives the token
counts. Events of one network read share its timestamp and reach the splitter as one delta:
under load a read holds many events, and that is where a busy client saves its CPU.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r4b_deploy.client.http import normalize_base_url
from r4b_deploy.client.reasoning import StreamSplitter, think_open_at_start
from r4b_deploy.client.records import ErrorKind, RequestRecord
from r4b_deploy.client.sse import SSEEvent, SSEParser
from r4b_deploy.client.wire import (
    CHAT_PATH,
    DONE_MARKER,
    MODELS_PATH,
    TOKENIZE_PATH,
    StreamEventError,
    one_line,
    parse_stream_event,
    server_error_message,
    status_error_kind,
)

if TYPE_CHECKING:
    import aiohttp

ERROR_BODY_MAX_BYTES = 65536  # of an error reply read for its message
TOKENIZE_CONCURRENCY = 8  # parallel /tokenize calls after a load phase
_TEXT_FIELDS = ("content", "reasoning", "reasoning_content")


@dataclass(slots=True)
class ChatOutcome:
    """A record, plus the answer text when its token count is still to be asked of /tokenize.

    `answer_text` is set only for a reply that has both reasoning and an answer and whose
    usage did not split them (`completion_tokens_details.reasoning_tokens`): the only case
    where the answer's token count is not known from the stream.
    """

    record: RequestRecord
    answer_text: str | None = None


@dataclass(slots=True)
class ProbeResult:
    """What GET /v1/models said, for the pre-flight check (never raised)."""

    ok: bool
    status_code: int | None = None
    models: list[str] | None = None  # None: the server has no /v1/models or answered oddly
    error_kind: ErrorKind | None = None
    error: str = ""


def _transport_error(exc: BaseException, streaming: bool) -> tuple[ErrorKind, str]:
    """Classify an aiohttp/OS exception; `streaming`: the 200 headers had arrived."""
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # aiohttp's timeouts subclass it
        return "timeout", "timeout: no data within the request timeout" + (" (mid-stream)" if streaming else "")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection", f"connection failed: {one_line(str(exc.os_error) or str(exc))}"
    if streaming or isinstance(exc, aiohttp.ClientPayloadError):
        return "stream", f"stream broken: {type(exc).__name__}: {one_line(str(exc))}"
    if isinstance(exc, aiohttp.ClientResponseError):  # e.g. a reply that is not HTTP at all
        return "protocol", f"bad HTTP reply: {one_line(exc.message)}"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "connection", f"connection failed: {type(exc).__name__}: {one_line(str(exc))}"
    return "protocol", f"{type(exc).__name__}: {one_line(str(exc))}"


def open_session(max_connections: int | None, timeout_s: float) -> aiohttp.ClientSession:
    """One pooled session for a whole run. `timeout_s` bounds connecting and each wait for data
    (first byte, next chunk), not a whole stream: a slow reply that keeps streaming is not cut,
    a server that stops is."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_connections or 0)
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
    # trust_env=False: a benchmark must not be routed through an HTTP proxy from the environment.
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False, raise_for_status=False)


def auth_headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


async def stream_chat(
    session: aiohttp.ClientSession,
    base_url: str,
    body: dict[str, Any] | bytes,
    api_key: str | None,
    timeout_s: float,
    *,
    workload: str = "text",
    mode: str | None = None,
    clock_zero_s: float | None = None,
) -> RequestRecord:
    """Stream one chat completion and record it (see `stream_chat_outcome`)."""
    outcome = await stream_chat_outcome(
        session, base_url, body, api_key, timeout_s, workload=workload, mode=mode, clock_zero_s=clock_zero_s
    )
    return outcome.record


async def stream_chat_outcome(
    session: aiohttp.ClientSession,
    base_url: str,
    body: dict[str, Any] | bytes,
    api_key: str | None,
    timeout_s: float,
    *,
    workload: str = "text",
    mode: str | None = None,
    clock_zero_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> ChatOutcome:
    """Stream one chat completion (the body must ask for `stream` with `include_usage`).

    `timeout_s` is enforced by the session (`open_session`); it is taken here too so the
    record can say what limit a timeout hit. `clock_zero_s` is the run's perf_counter origin
    for `start_s`. `headers` (from `auth_headers`) saves rebuilding them per request.
    """
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = headers if headers is not None else auth_headers(api_key)
    t0 = time.perf_counter()
    start_s = t0 - clock_zero_s if clock_zero_s is not None else 0.0
    status: int | None = None
    streaming = False
    state = _Stream(t0, mode)
    try:
        async with session.post(normalize_base_url(base_url) + CHAT_PATH, data=data, headers=hdrs) as resp:
            status = resp.status
            if status != 200:
                raw = await resp.content.read(ERROR_BODY_MAX_BYTES)
                message = f"HTTP {status}: {server_error_message(raw)}"
                return _failed(state, status_error_kind(status), message, status, workload, mode, start_s)
            if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                ctype = resp.headers.get("Content-Type") or "none"
                return _failed(
                    state,
                    "protocol",
                    f"asked for a stream, got Content-Type {ctype!r}",
                    status,
                    workload,
                    mode,
                    start_s,
                )
            streaming = True
            parser = SSEParser()
            handle_events = state.handle_events
            # Read to the end of the body even after [DONE]: a connection left with unread bytes
            # cannot go back to the pool, and closing it resets it (RST) under the server's feet.
            async for chunk in resp.content.iter_any():
                handle_events(parser.feed(chunk))
                if state.error:
                    break
            else:
                handle_events(parser.close())
    except Exception as exc:  # every failure becomes a record, none escapes
        if state.done and not state.error:
            return state.outcome(status, workload, mode, start_s)  # the reply was whole; only the close failed
        kind, message = _transport_error(exc, streaming)
        if kind == "timeout":
            message += f" ({timeout_s:g} s)"
        return _failed(state, kind, message, status, workload, mode, start_s)
    if state.error:
        return _failed(state, "stream", state.error, status, workload, mode, start_s)
    if not state.done and state.finish_reason is None:
        return _failed(state, "stream", "the stream ended without [DONE]", status, workload, mode, start_s)
    return state.outcome(status, workload, mode, start_s)


def _merge(deltas: list[dict]) -> dict:
    """Several deltas as one: texts concatenated field by field, in order."""
    merged: dict[str, str] = {}
    for delta in deltas:
        for name in _TEXT_FIELDS:
            text = delta.get(name)
            if text:
                merged[name] = merged.get(name, "") + text
    return merged


def _failed(
    state: _Stream, kind: ErrorKind, message: str, status: int | None, workload: str, mode: str | None, start_s: float
) -> ChatOutcome:
    return ChatOutcome(
        RequestRecord(
            success=False,
            error_kind=kind,
            error=message,
            status_code=status,
            workload=workload,
            mode=mode,
            start_s=start_s,
            latency_s=time.perf_counter() - state.t0,
            ttft_s=state.ttft_s,
            itl_s=state.itl_s,
            finish_reason=state.finish_reason,
        )
    )


class _Stream:
    """What one streamed reply has told us so far (the per-event hot path)."""

    __slots__ = (
        "completion_tokens",
        "done",
        "error",
        "finish_reason",
        "first_answer_s",
        "itl_s",
        "last_t",
        "prompt_tokens",
        "reasoning_tokens",
        "splitter",
        "t0",
        "ttft_s",
    )

    def __init__(self, t0: float, mode: str | None) -> None:
        self.t0 = t0
        self.last_t = t0
        self.done = False
        self.error = ""
        self.ttft_s: float | None = None
        self.first_answer_s: float | None = None
        self.itl_s: list[float] = []
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.splitter = StreamSplitter(think_open_at_start=think_open_at_start(mode))

    def handle_events(self, events: list[SSEEvent]) -> None:
        """Take the events of one network read. They arrived together, so they share one
        timestamp, and their deltas go to the splitter merged in one call: under heavy load a
        read holds many events, and this is where a busy client saves its CPU."""
        if self.done or self.error:
            return
        now = time.perf_counter()
        deltas: list[dict] = []
        for event in events:
            data = event.data
            if data == DONE_MARKER:
                self.done = True
                break
            try:
                obj = parse_stream_event(data)
            except StreamEventError as exc:
                self.error = str(exc)
                return
            choices = obj.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta")
                if delta and (delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content")):
                    deltas.append(delta)
                    if self.ttft_s is None:
                        self.ttft_s = now - self.t0
                    else:
                        self.itl_s.append(now - self.last_t)
                    self.last_t = now
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            usage = obj.get("usage")
            if usage:
                self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
                self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
                details = usage.get("completion_tokens_details")
                if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
                    self.reasoning_tokens = details["reasoning_tokens"]
        if not deltas:
            return
        channel = self.splitter.feed(deltas[0] if len(deltas) == 1 else _merge(deltas))
        # answer_deltas restarts at a late </think>: the latest "first" answer delta is the real one.
        if channel == "answer" and self.splitter.answer_deltas == 1:
            self.first_answer_s = now - self.t0

    def outcome(self, status: int | None, workload: str, mode: str | None, start_s: float) -> ChatOutcome:
        split = self.splitter.finish(self.finish_reason)
        first_answer_s = self.first_answer_s if split.answer else None
        completion = self.completion_tokens
        reasoning: int | None = None
        answer: int | None = None
        answer_text: str | None = None
        if completion is not None:
            if self.reasoning_tokens is not None:  # the server split them
                reasoning, answer = self.reasoning_tokens, completion - self.reasoning_tokens
            elif not split.answer:  # all reasoning (or nothing at all)
                reasoning, answer = completion, 0
            elif not split.thought:  # all answer
                reasoning, answer = 0, completion
            else:  # both: count the answer with /tokenize after the load phase
                answer_text = split.answer
        latency = (self.last_t if self.ttft_s is not None else time.perf_counter()) - self.t0
        record = RequestRecord(
            success=True,
            status_code=status,
            workload=workload,
            mode=mode,
            start_s=start_s,
            latency_s=latency,
            ttft_s=self.ttft_s,
            first_answer_token_s=first_answer_s,
            itl_s=self.itl_s,
            prompt_tokens=self.prompt_tokens,
            output_tokens=completion,
            reasoning_tokens=reasoning,
            answer_tokens=answer,
            finish_reason=self.finish_reason,
            thought=split.thought,
            truncated_reasoning=split.truncated_reasoning,
        )
        return ChatOutcome(record, answer_text)


async def probe_models(
    session: aiohttp.ClientSession, base_url: str, api_key: str | None, timeout_s: float
) -> ProbeResult:
    """GET /v1/models: is anything there, does it take our key, which models does it serve."""
    try:
        async with session.get(normalize_base_url(base_url) + MODELS_PATH, headers=auth_headers(api_key)) as resp:
            raw = await resp.content.read()
            if resp.status != 200:
                return ProbeResult(
                    ok=False,
                    status_code=resp.status,
                    error_kind=status_error_kind(resp.status),
                    error=f"HTTP {resp.status}: {server_error_message(raw)}",
                )
    except Exception as exc:
        kind, message = _transport_error(exc, streaming=False)
        if kind == "timeout":
            message = f"no answer within {timeout_s:g} s"
        return ProbeResult(ok=False, error_kind=kind, error=message)
    models: list[str] | None = None
    try:
        listed = json.loads(raw).get("data")
        models = [str(m["id"]) for m in listed if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        models = None
    return ProbeResult(ok=True, status_code=200, models=models)


async def count_tokens(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    texts: list[str],
    api_key: str | None,
    concurrency: int = TOKENIZE_CONCURRENCY,
) -> list[int | None]:
    """Token counts of `texts` by the server's own tokenizer (POST /tokenize); None where it failed.

    Called after a load phase, never during it: the counting must not load the server being measured.
    """
    url = normalize_base_url(base_url) + TOKENIZE_PATH
    headers = auth_headers(api_key)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(text: str) -> int | None:
        payload = json.dumps({"model": model, "prompt": text, "add_special_tokens": False}).encode()
        async with gate:
            try:
                async with session.post(url, data=payload, headers=headers) as resp:
                    if resp.status != 200:
                        return None
                    count = (await resp.json(content_type=None)).get("count")
                    return int(count) if isinstance(count, int) else None
            except Exception:  # a count we cannot get is reported as unknown
                return None

    return list(await asyncio.gather(*(one(t) for t in texts)))
