"""The OpenAI-compatible wire format, shared by the sync (smoke) and async (bench) clients:
paths, the stream's end marker, how a server's error body and a stream event are read."""

from __future__ import annotations

import json
from typing import Any

from r4b_deploy.client.records import ErrorKind

DONE_MARKER = "[DONE]"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HEALTH_PATH = "/health"
TOKENIZE_PATH = "/tokenize"
ERROR_TEXT_MAX_CHARS = 200  # how much of a server's error body a message quotes
EVENT_SAMPLE_CHARS = 60  # how much of a malformed stream event a message quotes
REQUEST_TIMEOUT_MAX_S = 24 * 3600.0  # longer is "forever" to a CI job (and overflows timers at 1e308)
# What a client reads of a reply, so a server cannot fill its memory:
ERROR_BODY_MAX_BYTES = 65536  # an error reply, read only for its message
BODY_MAX_BYTES = 8 * 1024 * 1024  # a whole JSON reply (models, tokenize, a non-streamed chat)
STREAM_BASE_MAX_BYTES = 65536  # a stream's events that are not tokens (role, finish, usage, [DONE])
STREAM_TOKEN_MAX_BYTES = 4096  # one token's event, generous: vLLM's are ~200 bytes


def stream_max_bytes(max_tokens: int) -> int:
    """The most bytes a streamed reply of `max_tokens` tokens may take: a stream past it is not
    a reply the request asked for (and must not fill the client's memory)."""
    return STREAM_BASE_MAX_BYTES + max_tokens * STREAM_TOKEN_MAX_BYTES


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / (1024 * 1024):g} MiB" if n_bytes >= 1024 * 1024 else f"{n_bytes / 1024:g} KiB"


def one_line(text: str, limit: int = ERROR_TEXT_MAX_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def server_error_message(body_text: str | bytes) -> str:
    """The message of an OpenAI-style error body ({"error": {...}}, {"message": ...}, {"detail": ...}),
    or the start of the raw body."""
    text = body_text.decode("utf-8", "replace") if isinstance(body_text, bytes) else body_text
    try:
        body = json.loads(text)
    except ValueError:
        return one_line(text)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return one_line(str(err["message"]))
        if isinstance(err, str):
            return one_line(err)
        for key in ("message", "detail"):
            if body.get(key):
                return one_line(str(body[key]))
    return one_line(text)


def status_error_kind(status: int) -> ErrorKind:
    if status == 401:
        return "http_401"
    if status == 404:
        return "http_404"
    if status == 429:
        return "http_429"
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    return "protocol"


class StreamEventError(ValueError):
    """A stream event that is not a chunk: malformed data, or an error event from the server."""


def parse_stream_event(data: str) -> dict[str, Any]:
    """One SSE event's data (not [DONE]) as a chunk object; StreamEventError says what is wrong."""
    sample = one_line(data, EVENT_SAMPLE_CHARS)
    try:
        obj = json.loads(data)
    except ValueError:
        raise StreamEventError(f"malformed SSE: event data is not JSON: {sample!r}") from None
    if not isinstance(obj, dict):
        raise StreamEventError(f"malformed SSE: event data is not a JSON object: {sample!r}")
    if "error" in obj:
        err = obj["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        raise StreamEventError(f"error event in the stream: {one_line(str(msg))}")
    return obj
