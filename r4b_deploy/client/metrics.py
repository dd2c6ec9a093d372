"""How many requests a vLLM server has served, from its Prometheus `/metrics`.

With replicas behind vLLM's router, `up` and `status` show how the requests spread: each
replica's own counter, read on its loopback port. Only the little of the Prometheus text format
that this needs is parsed here (a counter's samples, summed over their labels), so no client
library is loaded for it. vLLM's `/metrics` needs no API key. Stdlib only (urllib), with the
readiness probe's rules: a total deadline, no proxy for a loopback URL, a capped read.
"""

from __future__ import annotations

import http.client
import math
import re
import urllib.error
from collections.abc import Sequence

from r4b_deploy.client.deadline import Deadline, watched_opener
from r4b_deploy.client.urls import is_loopback
from r4b_deploy.client.wire import BODY_MAX_BYTES

METRICS_PATH = "/metrics"
# vLLM's counter of finished requests, one series per (model_name, engine, finished_reason):
# the only place the name is written.
REQUEST_SUCCESS_METRIC = "vllm:request_success_total"
METRICS_TIMEOUT_S = 5.0  # one GET on loopback; a live server answers in milliseconds
METRICS_MAX_BYTES = BODY_MAX_BYTES  # vLLM's page is some 100 KiB (histograms); more is not vLLM's

# One sample line: `name{label="value",...} value [timestamp]`. A label value is a quoted string
# in which `\"`, `\\` and `\n` are escaped, so it may hold braces, commas and spaces.
_SAMPLE = re.compile(
    r"""^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
        (?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?
        [ \t]+(?P<value>\S+)(?:[ \t]+-?\d+)?[ \t]*$""",
    re.VERBOSE,
)


def counter_total(text: str, name: str) -> float | None:
    """The sum of every sample named `name` in Prometheus text exposition, whatever its labels;
    None when there is no such sample (or one is not a finite number: no total can be trusted)."""
    total = 0.0
    found = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(name) or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:  # `name_created`, or another metric sharing the prefix
            continue
        try:
            value = float(match["value"])
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        total += value
        found = True
    return total if found else None


def metrics_url(url: str) -> str:
    return url.rstrip("/") + METRICS_PATH


def read_metrics(url: str, timeout_s: float = METRICS_TIMEOUT_S) -> str | None:
    """The text of `<url>/metrics`, or None when it cannot be had (refused, not 200, timeout, too big)."""
    try:
        opener = watched_opener(proxies=not is_loopback(url))
        with Deadline(timeout_s), opener.open(metrics_url(url), timeout=timeout_s) as response:
            if response.status != http.client.OK:
                return None
            body = response.read(METRICS_MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return None  # URLError covers refused and HTTP errors; OSError resets and timeouts mid-read
    if len(body) > METRICS_MAX_BYTES:
        return None
    return body.decode("utf-8", "replace")


def requests_served(url: str, timeout_s: float = METRICS_TIMEOUT_S) -> int | None:
    """Requests the vLLM server at `url` finished since it started (`vllm:request_success_total`,
    every finish reason); None when its /metrics is unreachable or has no such counter."""
    text = read_metrics(url, timeout_s)
    total = None if text is None else counter_total(text, REQUEST_SUCCESS_METRIC)
    return None if total is None else round(total)


def requests_served_each(urls: Sequence[str], timeout_s: float = METRICS_TIMEOUT_S) -> list[int | None]:
    """`requests_served` of several servers (the replicas), read at once: one that cannot be read
    costs one timeout, not one each."""
    if not urls:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return list(pool.map(lambda url: requests_served(url, timeout_s), urls))
