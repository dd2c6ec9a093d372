"""wait_healthy against a real HTTP server on loopback that becomes healthy after N polls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r4b_deploy.errors import LaunchError
from r4b_deploy.launch.health import probe_health, wait_healthy
from r4b_deploy.launch.ports import free_port


class HealthServer:
    """Answers 503 on /health for the first `unhealthy_polls` requests, then 200."""

    def __init__(self, unhealthy_polls: int) -> None:
        self.unhealthy_polls = unhealthy_polls
        self.polls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/health":
                    self.send_error(404)
                    return
                owner.polls += 1
                self.send_response(200 if owner.polls > owner.unhealthy_polls else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HealthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """A loopback URL where nothing listens (bound then closed)."""
    yield f"http://127.0.0.1:{free_port()}"


def test_returns_once_health_answers_200() -> None:
    ticks: list[float] = []
    with HealthServer(unhealthy_polls=3) as server:
        waited_s = wait_healthy(server.url, timeout_s=30, on_tick=ticks.append, poll_s=0.01)

    assert server.polls == 4
    assert len(ticks) == 3
    assert ticks == sorted(ticks)
    assert waited_s >= ticks[-1]


def test_trailing_slash_in_url_is_fine() -> None:
    with HealthServer(unhealthy_polls=0) as server:
        wait_healthy(server.url + "/", timeout_s=10, poll_s=0.01)
    assert server.polls == 1


def test_dead_process_fails_at_once(closed_port_url: str) -> None:
    calls: list[bool] = []

    def is_alive() -> bool:
        calls.append(True)
        return len(calls) < 3

    with pytest.raises(LaunchError, match="exited") as info:
        wait_healthy(closed_port_url, timeout_s=60, is_alive=is_alive, poll_s=0.01)

    assert len(calls) == 3
    assert info.value.fix


def test_times_out_when_never_healthy() -> None:
    with HealthServer(unhealthy_polls=10**9) as server, pytest.raises(LaunchError, match="not healthy after"):
        wait_healthy(server.url, timeout_s=0.3, is_alive=lambda: True, poll_s=0.05)
    assert server.polls >= 2


def test_probe_health_is_false_when_refused_or_unhealthy(closed_port_url: str) -> None:
    assert probe_health(closed_port_url) is False
    with HealthServer(unhealthy_polls=1) as server:
        assert probe_health(server.url) is False
        assert probe_health(server.url) is True
