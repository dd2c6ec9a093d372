"""Waiting for a vLLM server to answer `/health`: the one readiness probe both runtimes use.

vLLM answers 200 on /health once the engine is up (no API key needed); before that the port is
closed or answers 5xx. A server that dies while loading never becomes healthy, so the wait also
watches the process or container and fails at once instead of running out the clock.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from r4b_deploy.client.wire import HEALTH_PATH
from r4b_deploy.errors import LaunchError

PROBE_TIMEOUT_S = 5.0  # one request; a healthy server answers in milliseconds
DEFAULT_POLL_S = 0.5


def health_url(url: str) -> str:
    return url.rstrip("/") + HEALTH_PATH


def probe_health(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One GET of `<url>/health`: True on 200, False on anything else (refused, 5xx, timeout)."""
    try:
        with urllib.request.urlopen(health_url(url), timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        # URLError covers refused and HTTP errors; OSError covers resets and timeouts mid-read.
        return False


def wait_healthy(
    url: str,
    timeout_s: float,
    is_alive: Callable[[], bool] | None = None,
    on_tick: Callable[[float], None] | None = None,
    poll_s: float = DEFAULT_POLL_S,
) -> float:
    """Poll `<url>/health` until it answers 200; returns the seconds it took.

    Raises LaunchError when `is_alive()` says the server is gone or after `timeout_s`; the caller
    adds the server's log tail (it knows where the log is).
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        probe_timeout_s = max(0.1, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
        if probe_health(url, timeout_s=probe_timeout_s):
            return time.monotonic() - started
        elapsed_s = time.monotonic() - started
        if is_alive is not None and not is_alive():
            raise LaunchError(
                f"the server exited after {elapsed_s:.0f} s without becoming healthy at {health_url(url)}",
                fix="read the server log (`r4b-deploy logs`) for the first error",
            )
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"the server at {url} was not healthy after {timeout_s:.0f} s",
                fix="read the server log (`r4b-deploy logs`); if it is still loading, allow a longer health timeout",
            )
        if on_tick is not None:
            on_tick(elapsed_s)
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
