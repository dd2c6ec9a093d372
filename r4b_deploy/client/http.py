"""Synchronous client of an OpenAI-compatible vLLM endpoint (requests), for smoke checks.

Every failure becomes a `ClientError` carrying an `ErrorKind` (the same kinds the load
generator records) and a one-line message: callers count failures, they never see a
traceback. Every request is bounded by `timeout_s`, a server that stops mid-stream included.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from r4b_deploy.client.reasoning import (
    REASONING_FIELDS,
    ReasoningSplit,
    StreamSplitter,
    split_reasoning,
    think_open_at_start,
)
from r4b_deploy.client.records import ErrorKind
from r4b_deploy.client.sse import SSEParser
from r4b_deploy.client.wire import (
    CHAT_PATH,
    DONE_MARKER,
    HEALTH_PATH,
    MODELS_PATH,
    TOKENIZE_PATH,
    StreamEventError,
    parse_stream_event,
    server_error_message,
)
from r4b_deploy.errors import ExitCode, R4BError
from r4b_deploy.spec import model_spec

if TYPE_CHECKING:
    import requests

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_SERVED_MODEL_NAME = "r4b"
STREAM_READ_SIZE_BYTES = 65536


class ClientError(R4BError):
    """A request that did not give a usable answer; `kind` classifies it as RequestRecord does."""

    exit_code = ExitCode.CHECK_FAILED

    def __init__(self, kind: ErrorKind, message: str, *, status_code: int | None = None, fix: str | None = None):
        super().__init__(message, fix=fix)
        self.kind: ErrorKind = kind
        self.status_code = status_code


class ChatTimings(BaseModel):
    latency_s: float  # end to end
    ttft_s: float | None = None  # first token of any kind (reasoning or answer)
    first_answer_token_s: float | None = None  # first visible answer token (after </think>)
    itl_s: list[float] = Field(default_factory=list)  # gaps between streamed chunks after the first


class ChatResult(BaseModel):
    status_code: int
    split: ReasoningSplit
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # usage.prompt_tokens (None: the server sent no usage)
    completion_tokens: int | None = None
    timings: ChatTimings
    reasoning_field: str | None = None  # "reasoning" or "reasoning_content", as the server named it
    streamed: bool = False
    chunks: int = 0  # streamed chunks that carried text
    model: str | None = None  # the model name the server echoed


def normalize_base_url(url: str) -> str:
    """Accept `http://host:port`, with or without a trailing `/` or `/v1`."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _root_os_error(exc: BaseException) -> BaseException | None:
    """Walk requests/urllib3 wrappers down to the socket error that caused them."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and not type(e).__module__.startswith(("requests", "urllib3")):
            return e
        for nxt in (getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return None


def _is_read_timeout(exc: BaseException) -> bool:
    import urllib3.exceptions

    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return True
        for nxt in (getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return False


def _status_error(resp: requests.Response, has_key: bool, served_model_name: str) -> ClientError:
    code = resp.status_code
    text = server_error_message(resp.text or "")
    if code == 401:
        if has_key:
            return ClientError(
                "http_401",
                "401: wrong API key",
                status_code=code,
                fix="pass the key in the deployment's env file (--deployment DIR)",
            )
        return ClientError(
            "http_401",
            "401: the server wants an API key and none was given",
            status_code=code,
            fix="pass --api-key, --env-file or --deployment DIR",
        )
    if code == 404:
        return ClientError(
            "http_404",
            f"404: {text or 'not found'}",
            status_code=code,
            fix=f"check the served model name ({served_model_name!r}) and the URL",
        )
    if code == 429:
        return ClientError("http_429", f"429: rate limited: {text}", status_code=code)
    if 400 <= code < 500:
        return ClientError("http_4xx", f"{code}: {text}", status_code=code)
    if code >= 500:
        return ClientError("http_5xx", f"{code}: server error: {text}", status_code=code)
    return ClientError("protocol", f"unexpected HTTP status {code}: {text}", status_code=code)


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
            import requests

            self._session = requests.Session()
            # A loopback endpoint never goes through a proxy; a remote one keeps the environment's
            # proxy and CA-bundle settings (users behind TLS-inspecting proxies need them).
            self._session.trust_env = not _is_loopback(self.base_url)
        return self._session

    def _headers(self, auth: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if auth and self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, stream: bool = False, auth: bool = True
    ) -> requests.Response:
        """Send one request; a non-200 answer or no answer raises ClientError."""
        import requests

        url = self.base_url + path
        timeout = (self.timeout_s, self.timeout_s)
        try:
            resp = self._sess().request(
                method, url, json=body, headers=self._headers(auth), timeout=timeout, stream=stream
            )
            if resp.status_code != 200:
                try:
                    resp.content  # noqa: B018 -- read the error body, bounded by the read timeout
                finally:
                    resp.close()
                raise _status_error(resp, self._api_key is not None, self.served_model_name)
            return resp
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, path) from None

    def _transport_error(self, exc: BaseException, path: str) -> ClientError:
        import requests
        import urllib3.exceptions

        if isinstance(exc, requests.exceptions.Timeout) or _is_read_timeout(exc):
            return ClientError("timeout", f"timeout: no answer from {self.base_url}{path} within {self.timeout_s:g} s")
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
            return ClientError("stream", f"the connection broke mid-answer from {self.base_url}{path}")
        root = _root_os_error(exc)
        if isinstance(root, ConnectionRefusedError):
            return ClientError("connection", f"nothing answers at {self.base_url} (connection refused)")
        if isinstance(exc, requests.exceptions.ConnectionError):
            why = type(root).__name__ if root is not None else "connection error"
            return ClientError("connection", f"no answer from {self.base_url}{path}: {why}")
        return ClientError("protocol", f"bad request to {self.base_url}{path}: {type(exc).__name__}")

    def _json(self, resp: requests.Response, path: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise ClientError("protocol", f"{path} answered 200 with a body that is not JSON") from None
        except Exception as exc:  # a body read that times out or breaks
            raise self._transport_error(exc, path) from None
        if not isinstance(body, dict):
            raise ClientError("protocol", f"{path} answered 200 with JSON that is not an object")
        return body

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

        try:
            resp = self._sess().get(
                self.base_url + HEALTH_PATH, headers=self._headers(False), timeout=(self.timeout_s, self.timeout_s)
            )
            resp.close()
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, HEALTH_PATH) from None
        return resp.status_code

    def health(self) -> bool:
        return self.health_status() == 200

    def models(self) -> list[str]:
        body = self._json(self._request("GET", MODELS_PATH), MODELS_PATH)
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
        out = self._json(self._request("POST", TOKENIZE_PATH, body=body), TOKENIZE_PATH)
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
        resp = self._request("POST", CHAT_PATH, body=self._chat_body(messages, mode, max_tokens, temperature, extra))
        body = self._json(resp, CHAT_PATH)
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
        return ChatResult(
            status_code=resp.status_code,
            split=split,
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            timings=ChatTimings(latency_s=latency),
            reasoning_field=field,
            model=body.get("model"),
        )

    def chat_stream(
        self,
        messages: list[dict],
        *,
        mode: str | None = None,
        max_tokens: int,
        temperature: float = 0.0,
        extra: dict | None = None,
    ) -> ChatResult:
        """Streamed chat with usage in the final chunk; times the first token of each channel.

        The whole stream is bounded: each read by `timeout_s`, and the stream by `timeout_s` in
        all (checked between reads), so a server that trickles or stops mid-stream cannot hang it.
        """
        import urllib3.exceptions

        body = self._chat_body(messages, mode, max_tokens, temperature, extra)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        resp = self._request("POST", CHAT_PATH, body=body, stream=True)
        ctype = resp.headers.get("Content-Type", "")
        if "text/event-stream" not in ctype:
            resp.close()
            raise ClientError("protocol", f"asked for a stream, got Content-Type {ctype or 'none'!r}")
        parser = SSEParser()
        splitter = StreamSplitter(
            open_tag=self._thinking.open_tag,
            close_tag=self._thinking.close_tag,
            think_open_at_start=think_open_at_start(mode),
        )
        state = _StreamState(t0)
        try:
            while not state.done:
                try:
                    data = resp.raw.read1(STREAM_READ_SIZE_BYTES, decode_content=True)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    if _is_read_timeout(exc):
                        raise ClientError(
                            "timeout",
                            f"timeout: the stream stalled for {self.timeout_s:g} s after {state.chunks} text chunk(s)",
                        ) from None
                    raise self._transport_error(exc, CHAT_PATH) from None
                events = parser.feed(data) if data else parser.close()
                for event in events:
                    state.handle(event.data, splitter)
                    if state.done:
                        break
                if not data:
                    break
                if not state.done and time.perf_counter() > deadline:
                    raise ClientError(
                        "timeout", f"timeout: the stream from {self.base_url}{CHAT_PATH} ran past {self.timeout_s:g} s"
                    )
        finally:
            resp.close()
        if not state.done:
            raise ClientError("stream", "the stream ended without [DONE] (connection closed mid-stream)")
        latency = time.perf_counter() - t0
        split = splitter.finish(state.finish_reason)
        if not split.answer:
            state.first_answer_s = None  # text that looked like answer turned out to be reasoning
        return ChatResult(
            status_code=resp.status_code,
            split=split,
            finish_reason=state.finish_reason,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            timings=ChatTimings(
                latency_s=latency, ttft_s=state.ttft_s, first_answer_token_s=state.first_answer_s, itl_s=state.itl_s
            ),
            reasoning_field=splitter.reasoning_field,
            streamed=True,
            chunks=state.chunks,
            model=state.model,
        )


class _StreamState:
    """What one streamed reply has told us so far."""

    __slots__ = (
        "chunks",
        "completion_tokens",
        "done",
        "finish_reason",
        "first_answer_s",
        "itl_s",
        "last_chunk_t",
        "model",
        "prompt_tokens",
        "t0",
        "ttft_s",
    )

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.done = False
        self.chunks = 0
        self.ttft_s: float | None = None
        self.first_answer_s: float | None = None
        self.itl_s: list[float] = []
        self.last_chunk_t = t0
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.model: str | None = None

    def handle(self, data: str, splitter: StreamSplitter) -> None:
        if data == DONE_MARKER:
            self.done = True
            return
        try:
            obj = parse_stream_event(data)
        except StreamEventError as exc:
            raise ClientError("stream", str(exc)) from None
        now = time.perf_counter()
        self.model = self.model or obj.get("model")
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                channel = splitter.feed(delta)
                if channel is not None:
                    self.chunks += 1
                    if self.ttft_s is None:
                        self.ttft_s = now - self.t0
                    else:
                        self.itl_s.append(now - self.last_chunk_t)
                    self.last_chunk_t = now
                    if channel == "answer" and splitter.answer_deltas == 1:
                        self.first_answer_s = now - self.t0
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
