"""Waiting for a vLLM server to answer `/health`: the one readiness wait both runtimes use.

The probe is `client/health.py` (only the client layer speaks HTTP to the endpoint). A server
that dies while loading never becomes healthy, so the wait also watches the process or
container and fails at once instead of running out the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from r4b_deploy.client.health import PROBE_TIMEOUT_S, health_url, probe_health
from r4b_deploy.errors import LaunchError

DEFAULT_POLL_S = 0.5
MIN_PROBE_TIMEOUT_S = 0.1  # the last probe before the deadline still gets this long

__all__ = ["health_url", "probe_health", "wait_healthy"]  # the probe itself is the client layer's


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
        probe_timeout_s = max(MIN_PROBE_TIMEOUT_S, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
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
