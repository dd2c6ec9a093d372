"""The readiness probe (client/health.py) against a real loopback server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r4b_deploy.client.health import health_url, probe_health
from r4b_deploy.launch.ports import free_port


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthy_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_health_url_takes_a_trailing_slash() -> None:
    assert health_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/health"


def test_a_loopback_probe_ignores_a_proxy_from_the_environment(
    healthy_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy cannot reach this machine's 127.0.0.1: the probe goes direct (as EndpointClient does)."""
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert probe_health(healthy_url) is True


def test_nothing_listening_is_false_not_an_error() -> None:
    assert probe_health(f"http://127.0.0.1:{free_port()}", timeout_s=1.0) is False


def test_a_trickling_health_endpoint_is_cut_at_the_deadline(fake_openai_server) -> None:
    import time

    server = fake_openai_server(behaviour="trickle", trickle_interval_s=0.2, fault_health=True)
    timeout_s = 1.0
    t0 = time.monotonic()
    assert probe_health(server.url, timeout_s=timeout_s) is False
    assert time.monotonic() - t0 < timeout_s + 1.5  # each read got a byte: only a total deadline ends it
