"""The router the manifests deploy, run for real: the API key is the replicas' to check.

The manifests give the router no key: they rely on it passing each client's Authorization header
through to the replica, which answers 401 without the right key (as vLLM does with VLLM_API_KEY).
A stand-in replica records what arrives; vllm-router 0.1.17 (the pinned wheel) sits in front.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from support import require

from r4b_deploy.render.kubernetes_values import kubernetes_profile

KEY = "replica-key-0123456789"
READY_TIMEOUT_S = 60
pytestmark = pytest.mark.integration


class _Replica(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # /health answers without the key, as vLLM's does
        self._reply(200, {})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization")
        _Replica.seen.append(auth)
        if auth != f"Bearer {KEY}":
            self._reply(401, {"error": "Unauthorized"})
            return
        message = {"role": "assistant", "content": "ok"}
        self._reply(200, {"object": "chat.completion", "choices": [{"index": 0, "message": message}]})

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def router_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("vllm-router", path=str(Path(sys.executable).parent))
    require(binary is not None, "vllm-router (test extra)")
    assert binary is not None
    replica = ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    threading.Thread(target=replica.serve_forever, daemon=True).start()
    port, profile = _free_port(), kubernetes_profile().router
    log = (tmp_path / "router.log").open("wb")
    args = ["--host", "127.0.0.1", "--port", str(port), "--policy", profile.policy]
    args += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(_free_port())]
    args += ["--worker-urls", f"http://127.0.0.1:{replica.server_address[1]}"]
    process = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/readiness", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        else:
            pytest.fail(f"the router did not become ready: {(tmp_path / 'router.log').read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        replica.shutdown()
        log.close()


def _chat(url: str, key: str | None) -> int:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    body = json.dumps({"model": "r4b", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_router_passes_the_clients_key_through_and_the_replica_decides(router_url: str) -> None:
    _Replica.seen.clear()
    assert _chat(router_url, KEY) == 200
    assert _chat(router_url, None) == 401
    assert _chat(router_url, "wrong") == 401
    assert _Replica.seen == [f"Bearer {KEY}", None, "Bearer wrong"]  # unchanged, and never retried
