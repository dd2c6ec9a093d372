"""A zero-work OpenAI-compatible streaming server, to find a load generator's own ceiling.

Answers `POST /v1/chat/completions` with a canned SSE stream (one chunk per "token", then a
usage chunk and `[DONE]`), `GET /v1/models` and `GET /health`, on loopback. Everything else is
404, `/tokenize` included: a client that wants to align prompts to the server's tokenizer
(`vllm bench serve`) then skips it instead of tokenizing every prompt against a fake.
It does no inference, so the requests per second a client reaches against it is the client's
ceiling, not the server's. Raw asyncio protocol (no web framework) keeps the server cheap;
pin it to one core and the client to the other (`taskset -c 0 ... & taskset -c 1 ...`).

usage: python scripts/zero_work_server.py [--port 8099] [--tokens 16] [--gap-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time

DEFAULT_PORT = 8099
DEFAULT_TOKENS = 16  # chunks streamed per request when the request names no max_tokens
MAX_TOKENS_CAP = 4096
HEADER_END = b"\r\n\r\n"
MODEL_NAME = "r4b"

_MODELS_BODY = json.dumps(
    {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "zero-work", "max_model_len": 2048}]}
).encode()


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunked-encoding frame."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj: dict) -> bytes:
    return _chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


_TOKEN_EVENT = _event(
    {
        "id": "chatcmpl-0",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": {"content": " tok"}, "logprobs": None, "finish_reason": None}],
    }
)
_ROLE_EVENT = _event(
    {
        "id": "chatcmpl-0",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
    }
)
_DONE_EVENT = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
_STREAM_HEADERS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)


def _final_events(n_tokens: int, prompt_tokens: int) -> bytes:
    last = {
        "id": "chatcmpl-0",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "length"}],
    }
    usage = {
        "id": "chatcmpl-0",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL_NAME,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n_tokens,
            "total_tokens": prompt_tokens + n_tokens,
        },
    }
    return _event(last) + _event(usage) + _DONE_EVENT


def _plain(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: keep-alive\r\n\r\n"
        % (status.encode(), content_type, len(body))
    ) + body


class ZeroWorkProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time per connection (no pipelining needed)."""

    def __init__(self, server: ZeroWorkServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(HEADER_END)
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1")
        lines = head.split("\r\n")
        method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        total = end + len(HEADER_END) + length
        if len(self.buffer) < total:
            return
        body = self.buffer[end + len(HEADER_END) : total]
        self.buffer = self.buffer[total:]
        self.busy = True
        asyncio.get_running_loop().create_task(self._answer(method, path.split("?", 1)[0], body))

    async def _answer(self, method: str, path: str, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            if method == "POST" and path == "/v1/chat/completions":
                await self._stream(transport, body)
            elif path == "/v1/models":
                transport.write(_plain("200 OK", _MODELS_BODY))
            elif path in ("/health", "/ping"):
                transport.write(_plain("200 OK", b""))
            else:
                transport.write(_plain("404 Not Found", b'{"error":"not found"}'))
        finally:
            self.busy = False
            if not transport.is_closing():
                self._next_request()

    async def _stream(self, transport: asyncio.Transport, body: bytes) -> None:
        req = json.loads(body or b"{}")
        n_tokens = int(req.get("max_completion_tokens") or req.get("max_tokens") or self.server.tokens)
        n_tokens = max(1, min(n_tokens, MAX_TOKENS_CAP))
        transport.write(_STREAM_HEADERS + _ROLE_EVENT)
        gap_s = self.server.gap_s
        for _ in range(n_tokens):
            # A yield (or a real gap) between writes sends each token as its own TCP segment,
            # as a real server does, so the client pays one read per chunk.
            await asyncio.sleep(gap_s)
            if transport.is_closing():
                return
            transport.write(_TOKEN_EVENT)
        transport.write(_final_events(n_tokens, prompt_tokens=len(body) // 4))
        self.server.requests += 1


class ZeroWorkServer:
    def __init__(self, tokens: int, gap_s: float) -> None:
        self.tokens = tokens
        self.gap_s = gap_s
        self.requests = 0


async def serve(host: str, port: int, tokens: int, gap_s: float, report_every_s: float) -> None:
    state = ZeroWorkServer(tokens, gap_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ZeroWorkProtocol(state), host, port, backlog=1024)
    print(f"zero-work server on http://{host}:{port} ({tokens} tokens per request)", flush=True)
    async with server:
        if report_every_s <= 0:
            await server.serve_forever()
        last_n, last_t = 0, time.perf_counter()
        while True:
            await asyncio.sleep(report_every_s)
            now = time.perf_counter()
            print(f"{(state.requests - last_n) / (now - last_t):.0f} req/s", flush=True)
            last_n, last_t = state.requests, now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help="chunks when a request sets no max_tokens")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="pause between chunks")
    parser.add_argument("--report-every-s", type=float, default=0.0, help="print the served rate every N s")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.tokens, args.gap_ms / 1000.0, args.report_every_s))


if __name__ == "__main__":
    main()
