"""A total deadline for one blocking HTTP request, beside the socket's per-read timeout.

A socket timeout bounds each read, not a reply: a server that sends one byte every few seconds
never trips it, and a request to it never ends. `Deadline` runs a timer beside the request;
when it fires, every socket the request opened or reused is shut down, so the blocked read
returns at once and the transport raises. The caller asks `expired` to tell its deadline from
a real break. Stdlib only: the readiness probe (urllib, here) and the sync client (requests,
`client/session.py`) both register their sockets through `watch_current`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.request
from typing import Any

_local = threading.local()  # the Deadline of the request running on this thread, if any


class Deadline:
    """`with Deadline(timeout_s) as d:` bounds everything inside to `timeout_s` seconds in all."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        return self._expired

    def __enter__(self) -> Deadline:
        _local.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _local.deadline = None
        with self._lock:
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes (at once if it already has)."""
        with self._lock:
            if not self._expired:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for a TLS socket: SSLSocket.shutdown drops its SSL object,
    # which the thread blocked in a read may still be using. The read then sees end of file.
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def watch_current(sock: Any) -> None:
    """Register `sock` with the deadline of the request running on this thread, if there is one."""
    deadline: Deadline | None = getattr(_local, "deadline", None)
    if deadline is not None and isinstance(sock, socket.socket):
        deadline.watch(sock)


def _watched_create_connection(*args: Any, **kwargs: Any) -> socket.socket:
    sock = socket.create_connection(*args, **kwargs)
    watch_current(sock)
    return sock


class _WatchedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _watched_create_connection  # before TLS: a trickled handshake is cut too


class _WatchedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _watched_create_connection


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTPConnection, req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


def watched_opener(*, proxies: bool) -> urllib.request.OpenerDirector:
    """A urllib opener whose sockets a `Deadline` can cut; `proxies=False` ignores the environment's."""
    handlers: list[urllib.request.BaseHandler] = [_WatchedHTTPHandler(), _WatchedHTTPSHandler()]
    if not proxies:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)
