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

Timings and token counts are those of `client/stream.py`, the accumulator smoke's streamed
checks use too (the rules of `vllm bench serve`); this module only moves bytes and records.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r4b_deploy.client.records import ErrorKind, RequestRecord
from r4b_deploy.client.sse import SSELineTooLong, SSEParser
from r4b_deploy.client.stream import StreamAccumulator
from r4b_deploy.client.urls import normalize_base_url
from r4b_deploy.client.wire import (
    BODY_MAX_BYTES,
    CHAT_PATH,
    ERROR_BODY_MAX_BYTES,
    MODELS_PATH,
    TOKENIZE_PATH,
    one_line,
    server_error_message,
    size_text,
    status_error_kind,
)

if TYPE_CHECKING:
    import aiohttp

TOKENIZE_CONCURRENCY = 8  # parallel /tokenize calls after a load phase


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

    if isinstance(exc, aiohttp.ServerTimeoutError):  # connect or one read: aiohttp's per-wait timeouts
        return "timeout", "timeout: no data within the request timeout" + (" (mid-stream)" if streaming else "")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # the session's total: a trickling reply
        return "timeout", "timeout: the request ran past its total deadline" + (" (mid-stream)" if streaming else "")
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
    """One pooled session for a whole run. `timeout_s` bounds each request in all, stream
    included (a server that trickles a byte at a time is cut), and so each wait for a
    connection, a first byte or the next chunk."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_connections or 0)
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
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
    max_bytes: int | None = None,
) -> RequestRecord:
    """Stream one chat completion and record it (see `stream_chat_outcome`)."""
    outcome = await stream_chat_outcome(
        session,
        base_url,
        body,
        api_key,
        timeout_s,
        workload=workload,
        mode=mode,
        clock_zero_s=clock_zero_s,
        max_bytes=max_bytes,
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
    max_bytes: int | None = None,
) -> ChatOutcome:
    """Stream one chat completion (the body must ask for `stream` with `include_usage`).

    `timeout_s` is enforced by the session (`open_session`); it is taken here too so the
    record can say what limit a timeout hit. `clock_zero_s` is the run's perf_counter origin
    for `start_s`. `headers` (from `auth_headers`) saves rebuilding them per request.
    `max_bytes` caps the stream (`wire.stream_max_bytes(max_tokens)`): a bigger one is a
    protocol failure, so no server can fill the load generator's memory.
    """
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = headers if headers is not None else auth_headers(api_key)
    t0 = time.perf_counter()
    start_s = t0 - clock_zero_s if clock_zero_s is not None else 0.0
    status: int | None = None
    streaming = False
    acc = StreamAccumulator(t0, mode)
    try:
        async with session.post(normalize_base_url(base_url) + CHAT_PATH, data=data, headers=hdrs) as resp:
            status = resp.status
            if status != 200:
                raw = await resp.content.read(ERROR_BODY_MAX_BYTES)
                message = f"HTTP {status}: {server_error_message(raw)}"
                return _failed(acc, status_error_kind(status), message, status, workload, mode, start_s)
            if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                ctype = resp.headers.get("Content-Type") or "none"
                message = f"asked for a stream, got Content-Type {ctype!r}"
                return _failed(acc, "protocol", message, status, workload, mode, start_s)
            streaming = True
            parser = SSEParser()
            feed = acc.feed
            clock = time.perf_counter
            # Read to the end of the body even after [DONE]: a connection left with unread bytes
            # cannot go back to the pool, and closing it resets it (RST) under the server's feet.
            received = 0
            limit = max_bytes or 0
            async for chunk in resp.content.iter_any():
                received += len(chunk)
                if limit and received > limit:
                    message = f"the stream ran past {size_text(limit)} (its max_tokens' worth)"
                    return _failed(acc, "protocol", message, status, workload, mode, start_s)
                feed(parser.feed(chunk), clock())
                if acc.error:
                    break
            else:
                feed(parser.close(), clock())
    except SSELineTooLong as exc:
        return _failed(acc, "stream", str(exc), status, workload, mode, start_s)
    except Exception as exc:  # every failure becomes a record, none escapes
        if acc.done and not acc.error:
            return _succeeded(acc, status, workload, mode, start_s)  # the reply was whole; only the close failed
        kind, message = _transport_error(exc, streaming)
        if kind == "timeout":
            message += f" ({timeout_s:g} s)"
        return _failed(acc, kind, message, status, workload, mode, start_s)
    problem = acc.failure()
    if problem:
        return _failed(acc, "stream", problem, status, workload, mode, start_s)
    return _succeeded(acc, status, workload, mode, start_s)


def _failed(
    acc: StreamAccumulator,
    kind: ErrorKind,
    message: str,
    status: int | None,
    workload: str,
    mode: str | None,
    start_s: float,
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
            latency_s=time.perf_counter() - acc.t0,
            ttft_s=acc.ttft_s,
            itl_s=array("d", acc.itl_s),
            finish_reason=acc.finish_reason,
        )
    )


def _succeeded(
    acc: StreamAccumulator, status: int | None, workload: str, mode: str | None, start_s: float
) -> ChatOutcome:
    reply = acc.reply(time.perf_counter())
    split = reply.split
    # Both reasoning and an answer, and usage did not split them: count the answer with /tokenize
    # after the load phase (never during it: counting must not load the server being measured).
    unsplit = reply.completion_tokens is not None and reply.reasoning_tokens is None and bool(split.answer)
    record = RequestRecord(
        success=True,
        status_code=status,
        workload=workload,
        mode=mode,
        start_s=start_s,
        latency_s=reply.latency_s,
        ttft_s=reply.ttft_s,
        first_answer_token_s=reply.first_answer_token_s,
        itl_s=array("d", reply.itl_s),  # compact: a run keeps every record (client/records.py)
        prompt_tokens=reply.prompt_tokens,
        output_tokens=reply.completion_tokens,
        reasoning_tokens=reply.reasoning_tokens,
        answer_tokens=reply.answer_tokens,
        finish_reason=_shared(reply.finish_reason),
        thought=split.thought,
        truncated_reasoning=split.truncated_reasoning,
        token_split_source=reply.token_split_source,
        split_adjusted=reply.token_split_adjusted,
        reasoning_path=reply.reasoning_path,
    )
    return ChatOutcome(record, split.answer if unsplit else None)


def _shared(text: Any) -> Any:
    """One copy of a short repeated string ("stop", "length") for all records, not one each."""
    return sys.intern(text) if type(text) is str else text


async def _read_capped(resp: aiohttp.ClientResponse, limit_bytes: int) -> bytes | None:
    """The whole body, or None once it runs past `limit_bytes` (the rest is left unread)."""
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit_bytes:
            return None
    return bytes(body)


async def probe_models(
    session: aiohttp.ClientSession, base_url: str, api_key: str | None, timeout_s: float
) -> ProbeResult:
    """GET /v1/models: is anything there, does it take our key, which models does it serve."""
    try:
        async with session.get(normalize_base_url(base_url) + MODELS_PATH, headers=auth_headers(api_key)) as resp:
            if resp.status == 200:
                raw = await _read_capped(resp, BODY_MAX_BYTES)  # None: too big to be a model list
            else:
                raw = await resp.content.read(ERROR_BODY_MAX_BYTES)
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
        listed = json.loads(raw or b"").get("data")
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
                    raw = await _read_capped(resp, BODY_MAX_BYTES)
                    count = json.loads(raw).get("count") if raw is not None else None
                    return int(count) if isinstance(count, int) else None
            except Exception:  # a count we cannot get is reported as unknown
                return None

    return list(await asyncio.gather(*(one(t) for t in texts)))
