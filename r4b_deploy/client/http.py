"""Synchronous client of an OpenAI-compatible vLLM endpoint (requests), for smoke checks.

Every failure becomes a `ClientError` carrying an `ErrorKind` (the same kinds the load
generator records) and a one-line message: callers count failures, they never see a
traceback. Every request is bounded by `timeout_s`: each read, and the whole request (a
`Deadline` cuts a server that trickles bytes), streams included; what is read is capped
(`client/wire.py`), so a huge reply cannot fill the client's memory.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from r4b_deploy.client.deadline import Deadline
from r4b_deploy.client.errors import ClientError, is_read_timeout, root_os_error, status_error
from r4b_deploy.client.reasoning import REASONING_FIELDS, ReasoningSplit, split_reasoning, think_open_at_start
from r4b_deploy.client.sse import SSELineTooLong, SSEParser
from r4b_deploy.client.stream import ReasoningPath, StreamAccumulator, TokenSource, reasoning_path, token_split
from r4b_deploy.client.urls import is_loopback, normalize_base_url
from r4b_deploy.client.wire import (
    BODY_MAX_BYTES,
    CHAT_PATH,
    ERROR_BODY_MAX_BYTES,
    HEALTH_PATH,
    MODELS_PATH,
    TOKENIZE_PATH,
    size_text,
    stream_max_bytes,
)
from r4b_deploy.spec import model_spec

if TYPE_CHECKING:
    import requests

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_SERVED_MODEL_NAME = "r4b"
STREAM_READ_SIZE_BYTES = 65536


class ChatTimings(BaseModel):
    latency_s: float  # to the last text chunk when streamed (client/stream.py), to the whole body when not
    ttft_s: float | None = None  # first token of any kind (reasoning or answer)
    first_answer_token_s: float | None = None  # first visible answer token (after </think>)
    itl_s: list[float] = Field(default_factory=list)  # gaps between streamed chunks after the first


class ChatResult(BaseModel):
    status_code: int
    split: ReasoningSplit
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # usage.prompt_tokens (None: the server sent no usage)
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # see client/stream.py token_split (None: unknown)
    answer_tokens: int | None = None
    token_split_source: TokenSource | None = None  # "usage" or "text" (None: unknown)
    token_split_adjusted: bool = False  # usage's reasoning_tokens contradicted the text received
    timings: ChatTimings
    reasoning_field: str | None = None  # "reasoning" or "reasoning_content", as the server named it
    reasoning_path: ReasoningPath | None = None  # the field's name, "think_tags", or None (no reasoning)
    streamed: bool = False
    chunks: int = 0  # streamed chunks that carried text
    model: str | None = None  # the model name the server echoed


class EndpointClient:
    """Health, models, chat (plain and streamed), tokenize against one endpoint."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        served_model_name: str = DEFAULT_SERVED_MODEL_NAME,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._api_key = api_key or None
        self.timeout_s = timeout_s
        self.served_model_name = served_model_name
        self._session: requests.Session | None = None
        self._thinking = model_spec().thinking

    def __repr__(self) -> str:  # never shows the key
        return f"EndpointClient({self.base_url!r}, served_model_name={self.served_model_name!r})"

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- plumbing -------------------------------------------------------------------------

    def _sess(self) -> requests.Session:
        if self._session is None:
            from r4b_deploy.client.session import watched_session

            # A loopback endpoint never goes through a proxy; a remote one keeps the environment's
            # proxy and CA-bundle settings (users behind TLS-inspecting proxies need them).
            self._session = watched_session(trust_env=not is_loopback(self.base_url))
        return self._session

    def _headers(self, auth: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if auth and self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _send(
        self, method: str, path: str, deadline: Deadline, *, body: dict[str, Any] | None = None, auth: bool = True
    ) -> requests.Response:
        """Send one request and read its headers; a non-200 answer or no answer raises ClientError.
        The body is left unread (streamed): callers read it within their bound."""
        import requests

        timeout = (self.timeout_s, self.timeout_s)
        try:
            resp = self._sess().request(
                method, self.base_url + path, json=body, headers=self._headers(auth), timeout=timeout, stream=True
            )
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, path, deadline) from None
        if resp.status_code != 200:
            try:
                raw = resp.raw.read(ERROR_BODY_MAX_BYTES, decode_content=True)  # only for its message
            except Exception:  # a body that breaks or trickles: the status says enough
                raw = b""
            finally:
                resp.close()
            raise status_error(resp.status_code, raw, self._api_key is not None, self.served_model_name)
        return resp

    def _transport_error(self, exc: BaseException, path: str, deadline: Deadline | None = None) -> ClientError:
        import requests
        import urllib3.exceptions

        if deadline is not None and deadline.expired:
            return self._deadline_error(path)
        if isinstance(exc, requests.exceptions.Timeout) or is_read_timeout(exc):
            return ClientError("timeout", f"timeout: no answer from {self.base_url}{path} within {self.timeout_s:g} s")
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
            return ClientError("stream", f"the connection broke mid-answer from {self.base_url}{path}")
        root = root_os_error(exc)
        if isinstance(root, ConnectionRefusedError):
            return ClientError("connection", f"nothing answers at {self.base_url} (connection refused)")
        if isinstance(exc, requests.exceptions.ConnectionError):
            why = type(root).__name__ if root is not None else "connection error"
            return ClientError("connection", f"no answer from {self.base_url}{path}: {why}")
        return ClientError("protocol", f"bad request to {self.base_url}{path}: {type(exc).__name__}")

    def _deadline_error(self, path: str) -> ClientError:
        return ClientError(
            "timeout",
            f"timeout: {self.base_url}{path} did not answer in full within {self.timeout_s:g} s"
            " (each request's total deadline, streams included)",
        )

    def _read_body(self, resp: requests.Response, path: str, deadline: Deadline) -> bytes:
        """The whole body, at most BODY_MAX_BYTES: a bigger one is refused, not read."""
        import urllib3.exceptions

        limit = BODY_MAX_BYTES
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_big(path, limit)
        body = bytearray()
        try:
            while chunk := resp.raw.read1(STREAM_READ_SIZE_BYTES, decode_content=True):
                body += chunk
                if len(body) > limit:
                    raise self._too_big(path, limit)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._transport_error(exc, path, deadline) from None
        if deadline.expired:  # the deadline cut the socket: what came is not the whole body
            raise self._deadline_error(path)
        return bytes(body)

    def _too_big(self, path: str, limit_bytes: int) -> ClientError:
        return ClientError("protocol", f"{path} answered with a body over {size_text(limit_bytes)}; not read")

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """One request whose 200 answer is a JSON object: (status, object), in `timeout_s` in all."""
        with Deadline(self.timeout_s) as deadline:
            resp = self._send(method, path, deadline, body=body)
            try:
                raw = self._read_body(resp, path, deadline)
            finally:
                resp.close()
        try:
            obj = json.loads(raw)
        except ValueError:
            raise ClientError("protocol", f"{path} answered 200 with a body that is not JSON") from None
        if not isinstance(obj, dict):
            raise ClientError("protocol", f"{path} answered 200 with JSON that is not an object")
        return resp.status_code, obj

    def _chat_body(
        self, messages: list[dict], mode: str | None, max_tokens: int, temperature: float, extra: dict | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model_name,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        kwargs = self._thinking.template_kwargs(mode)
        if kwargs:
            body[self._thinking.request_field] = kwargs
        if extra:
            body.update(extra)
        return body

    # -- calls ----------------------------------------------------------------------------

    def health_status(self) -> int:
        """/health's HTTP status (vLLM: 200 when ready). No answer at all raises ClientError."""
        import requests

        with Deadline(self.timeout_s) as deadline:
            try:
                resp = self._sess().get(
                    self.base_url + HEALTH_PATH,
                    headers=self._headers(False),
                    timeout=(self.timeout_s, self.timeout_s),
                    stream=True,  # the body is never read: the status is the answer
                )
                resp.close()
            except requests.exceptions.RequestException as exc:
                raise self._transport_error(exc, HEALTH_PATH, deadline) from None
        return resp.status_code

    def health(self) -> bool:
        return self.health_status() == 200

    def models(self) -> list[str]:
        _, body = self._json("GET", MODELS_PATH)
        data = body.get("data")
        if not isinstance(data, list):
            raise ClientError("protocol", f"{MODELS_PATH} has no 'data' list")
        return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id") is not None]

    def tokenize(self, messages: list[dict] | None = None, prompt: str | None = None, mode: str | None = None) -> int:
        """Prompt tokens as the server counts them (vLLM's /tokenize), chat template kwargs applied."""
        if (messages is None) == (prompt is None):
            raise ValueError("tokenize takes messages or prompt, one of them")
        body: dict[str, Any] = {"model": self.served_model_name}
        if messages is not None:
            body["messages"] = messages
            kwargs = self._thinking.template_kwargs(mode)
            if kwargs:
                body[self._thinking.request_field] = kwargs
        else:
            body["prompt"] = prompt
        _, out = self._json("POST", TOKENIZE_PATH, body)
        count = out.get("count")
        if not isinstance(count, int):
            raise ClientError("protocol", f"{TOKENIZE_PATH} answered without an integer 'count'")
        return count

    def chat(
        self,
        messages: list[dict],
        *,
        mode: str | None = None,
        max_tokens: int,
        temperature: float = 0.0,
        extra: dict | None = None,
    ) -> ChatResult:
        t0 = time.perf_counter()
        status, body = self._json("POST", CHAT_PATH, self._chat_body(messages, mode, max_tokens, temperature, extra))
        latency = time.perf_counter() - t0
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ClientError("protocol", f"{CHAT_PATH} answered 200 with no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ClientError("protocol", f"{CHAT_PATH} answered 200 with no message in choices[0]")
        field = next((name for name in REASONING_FIELDS if message.get(name)), None)
        finish = choice.get("finish_reason")
        split = split_reasoning(
            message.get("content"),
            message.get(field) if field else None,
            finish,
            open_tag=self._thinking.open_tag,
            close_tag=self._thinking.close_tag,
            think_open_at_start=think_open_at_start(mode),
        )
        usage = body.get("usage") or {}
        if not isinstance(usage, dict):
            raise ClientError("protocol", f"{CHAT_PATH} answered 200 with a 'usage' that is not an object")
        completion = usage.get("completion_tokens")
        details = usage.get("completion_tokens_details")
        usage_reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
        tokens = token_split(completion, usage_reasoning if isinstance(usage_reasoning, int) else None, split)
        return ChatResult(
            status_code=status,
            split=split,
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=completion,
            reasoning_tokens=tokens.reasoning_tokens,
            answer_tokens=tokens.answer_tokens,
            token_split_source=tokens.source,
            token_split_adjusted=tokens.adjusted,
            timings=ChatTimings(latency_s=latency),
            reasoning_field=field,
            reasoning_path=reasoning_path(field, split),
            model=body.get("model"),
        )

    def _accumulate(
        self, resp: requests.Response, acc: StreamAccumulator, deadline: Deadline, limit_bytes: int
    ) -> StreamAccumulator:
        import urllib3.exceptions

        ctype = resp.headers.get("Content-Type", "")
        if "text/event-stream" not in ctype:
            raise ClientError("protocol", f"asked for a stream, got Content-Type {ctype or 'none'!r}")
        parser = SSEParser()
        received = 0
        while True:
            try:
                data = resp.raw.read1(STREAM_READ_SIZE_BYTES, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if not deadline.expired and is_read_timeout(exc):
                    raise ClientError(
                        "timeout",
                        f"timeout: the stream stalled for {self.timeout_s:g} s after {acc.chunks} text chunk(s)",
                    ) from None
                if deadline.expired:
                    break  # said below, with the chunks that came
                raise self._transport_error(exc, CHAT_PATH, deadline) from None
            received += len(data)
            if received > limit_bytes:
                raise ClientError(
                    "protocol", f"the stream from {CHAT_PATH} ran past {size_text(limit_bytes)} (its max_tokens' worth)"
                )
            try:
                events = parser.feed(data) if data else parser.close()
            except SSELineTooLong as exc:
                raise ClientError("stream", str(exc)) from None
            acc.feed(events, time.perf_counter())
            if acc.done or acc.error or not data:
                break
        if deadline.expired and not acc.done:
            raise ClientError(
                "timeout",
                f"timeout: the stream did not end within {self.timeout_s:g} s (it stalled or trickled)"
                f" after {acc.chunks} text chunk(s)",
            )
        return acc

    def chat_stream(
        self,
        messages: list[dict],
        *,
        mode: str | None = None,
        max_tokens: int,
        temperature: float = 0.0,
        extra: dict | None = None,
    ) -> ChatResult:
        """Streamed chat with usage in the final chunk, accumulated as the load generator does
        (client/stream.py): the same TTFT, first answer token, ITLs and token counts.

        The whole stream is bounded: each read by `timeout_s`, the request by `timeout_s` in all
        (a `Deadline`: a server that trickles or stops mid-stream cannot hang it), and its size by
        `stream_max_bytes(max_tokens)` (a server cannot fill the client's memory).
        """
        body = self._chat_body(messages, mode, max_tokens, temperature, extra)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        limit = stream_max_bytes(max_tokens)
        t0 = time.perf_counter()
        with Deadline(self.timeout_s) as deadline:
            resp = self._send("POST", CHAT_PATH, deadline, body=body)
            try:
                acc = self._accumulate(resp, StreamAccumulator(t0, mode), deadline, limit)
            finally:
                resp.close()
        problem = acc.failure()
        if problem:
            raise ClientError("stream", problem)
        reply = acc.reply(time.perf_counter())
        return ChatResult(
            status_code=resp.status_code,
            split=reply.split,
            finish_reason=reply.finish_reason,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            reasoning_tokens=reply.reasoning_tokens,
            answer_tokens=reply.answer_tokens,
            token_split_source=reply.token_split_source,
            token_split_adjusted=reply.token_split_adjusted,
            timings=ChatTimings(
                latency_s=reply.latency_s,
                ttft_s=reply.ttft_s,
                first_answer_token_s=reply.first_answer_token_s,
                itl_s=reply.itl_s,
            ),
            reasoning_field=reply.reasoning_field,
            reasoning_path=reply.reasoning_path,
            streamed=True,
            chunks=reply.chunks,
            model=reply.model,
        )
