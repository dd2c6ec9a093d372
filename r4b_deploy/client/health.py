"""The readiness probe: one GET of `/health`, the only HTTP that launching does.

vLLM answers 200 on /health once the engine is up (no API key needed); before that the port is
closed or answers 5xx. Stdlib only (urllib): the runtimes and `status` probe without loading
`requests`. Proxies follow EndpointClient's rule: never for a loopback endpoint (a proxy from
the environment cannot reach this machine's 127.0.0.1), the environment's for a remote one.
"""

from __future__ import annotations

import http.client
import urllib.error

from r4b_deploy.client.deadline import Deadline, watched_opener
from r4b_deploy.client.urls import is_loopback
from r4b_deploy.client.wire import HEALTH_PATH

PROBE_TIMEOUT_S = 5.0  # one request; a healthy server answers in milliseconds


def health_url(url: str) -> str:
    return url.rstrip("/") + HEALTH_PATH


def probe_health(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One GET of `<url>/health`: True on 200, False on anything else (refused, 5xx, timeout).
    `timeout_s` bounds each read and the whole probe (a server trickling its headers included)."""
    try:
        opener = watched_opener(proxies=not is_loopback(url))
        with Deadline(timeout_s), opener.open(health_url(url), timeout=timeout_s) as response:
            return response.status == 200  # the body is never read
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        # URLError covers refused and HTTP errors; OSError covers resets and timeouts mid-read.
        return False
