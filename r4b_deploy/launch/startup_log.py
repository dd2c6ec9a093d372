"""vLLM's own start-up figures, read from its server log: what the plan is checked against.

Pure: log text in, a `VllmStartup` out. The lines and their level, per release (read in each
release's source: v1/worker/gpu_worker.py, gpu_model_runner.py, cpu_worker.py, core/kv_cache_utils.py):

  INFO   "Model loading took 14.99 GiB memory and ..."                      weights per GPU (GPU only)
  INFO   "Available KV cache memory: 58.11 GiB"                             per GPU
  INFO   "Explicitly set (1.0/23.59) GiB for KV cache on node 0."           the CPU build's KV space
  INFO   "GPU KV cache size: 476,016 tokens" + "Maximum concurrency for 16,384 tokens per request: 29.05x"
         (0.19: two lines; 0.32 and 0.33: one line, "CPU KV cache size: ..." on the CPU build)
  INFO   "Graph capturing finished in 3 secs, took 0.91 GiB"; "CUDA graph pool memory: 0.91 GiB
         (actual), 0.84 GiB (estimated), ..." (when vLLM estimated the graphs: 0.19 and later)
  DEBUG  "... torch peak memory increase: 1.89GiB; non-torch forward increase memory: 0.25GiB; ..."
         (0.19; 0.32/0.33 print "total consumed (from mem_get_info): X GiB; weights memory: Y GiB"
         instead of the non-torch term), "Free memory on device (78.68/79.19 GiB) on startup."

The DEBUG lines appear only with VLLM_LOGGING_LEVEL=DEBUG, which `up` does not set (docs/planner.md:
the INFO lines locate a drift well enough, and DEBUG floods the log; vLLM 0.19's DEBUG compile-cache
dump even prints VLLM_API_KEY). GiB figures are as vLLM rounds them (2 decimals).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from r4b_deploy.launch.base import Runtime
    from r4b_deploy.planning.drift import PlanCheck

BYTES_PER_GIB = 1024**3
# How far back from the end of the server log `up` and `status` look for the start-up lines: a start
# logs ~130 lines at INFO (the CPU rehearsal) and ~800 at DEBUG on a GPU (llm-d's logs), then about
# one line per request; reading this many lines from the end is a few MB at most.
STARTUP_LOG_LINES = 20_000
# A new engine (a restart in the same log) starts the figures afresh.
_ENGINE_START = re.compile(r"Initializing a V1 LLM engine \(v(?P<version>[^)\s]+)\)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GIB = r"(?P<gib>-?\d+(?:\.\d+)?) ?GiB"
_PATTERNS: dict[str, re.Pattern[str]] = {
    "weights": re.compile(r"Model loading took " + _GIB),
    "kv_gpu": re.compile(r"Available KV cache memory: " + _GIB),
    "kv_cpu": re.compile(
        r"(?:Explicitly|Auto) set \((?P<gib>\d+(?:\.\d+)?)/(?P<total>\d+(?:\.\d+)?)\) GiB for KV cache"
    ),
    "tokens": re.compile(r"\b(?P<device>[A-Z]+)(?: \+ host)? KV cache size: (?P<tokens>[\d,]+) tokens"),
    "concurrency": re.compile(r"Maximum concurrency for (?P<len>[\d,]+) tokens per request: (?P<x>\d+(?:\.\d+)?)x"),
    "graphs_took": re.compile(r"Graph capturing finished in \S+ secs, took " + _GIB),
    "graph_pool": re.compile(
        r"CUDA graph pool memory: (?P<actual>\d+(?:\.\d+)?) GiB \(actual\), (?P<est>\d+(?:\.\d+)?) GiB \(estimated\)"
    ),
    "peak": re.compile(r"torch peak memory increase: " + _GIB),
    "non_torch": re.compile(r"non-torch forward increase memory: " + _GIB),
    "consumed": re.compile(r"total consumed \(from mem_get_info\): " + _GIB),
    "cuda_total": re.compile(
        r"(?:Free memory on device \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\)"
        r"|worker init memory snapshot: .*?free_memory=(?P<free2>[\d.]+)GiB, total_memory=(?P<total2>[\d.]+)GiB)"
    ),
}


class VllmStartup(BaseModel):
    """What one vLLM start logged about its memory, per GPU (bytes from vLLM's 2-decimal GiB)."""

    model_config = ConfigDict(frozen=True)

    device: str | None = None  # "GPU" or "CPU": which KV cache the token count is of
    vllm_version: str | None = None
    kv_cache_bytes: int | None = None  # "Available KV cache memory" (GPU; the least over ranks), the CPU KV space
    kv_tokens: int | None = None
    max_model_len: int | None = None  # the length vLLM's concurrency figure is for
    max_concurrency: float | None = None
    weights_bytes: int | None = None  # "Model loading took" (GPU only)
    cuda_graph_bytes: int | None = None  # the captured graphs' pool (after the KV cache was sized)
    cuda_graph_estimate_bytes: int | None = None  # what vLLM profiled for them beforehand (0.19 and later)
    # DEBUG only (VLLM_LOGGING_LEVEL=DEBUG):
    activation_bytes: int | None = None  # "torch peak memory increase"
    non_torch_bytes: int | None = None
    cuda_total_bytes: int | None = None
    start_free_bytes: int | None = None

    @property
    def found(self) -> bool:
        """Did the log hold vLLM's KV cache lines (the ones every release prints at INFO)?"""
        return self.kv_tokens is not None or self.kv_cache_bytes is not None

    @property
    def has_breakdown(self) -> bool:
        """Were the DEBUG profiling lines there (torch peak, non-torch)?"""
        return self.activation_bytes is not None


def _bytes(gib: str) -> int:
    return round(float(gib) * BYTES_PER_GIB)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def parse_startup(lines: str | Iterable[str]) -> VllmStartup:
    """The last vLLM start's figures in a log (text or lines); unknown lines are ignored."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    seen: dict[str, object] = {}
    consumed: int | None = None
    for raw in lines:
        line = _ANSI.sub("", raw)
        start = _ENGINE_START.search(line)
        if start:
            seen, consumed = {"vllm_version": start["version"]}, None
            continue
        for key, pattern in _PATTERNS.items():
            match = pattern.search(line)
            if match:
                consumed = _record(seen, key, match, consumed)
    if consumed is not None and "non_torch_bytes" not in seen and "weights_bytes" in seen:
        # 0.32/0.33's DEBUG profile line: consumed = weights + non-torch.
        seen["non_torch_bytes"] = consumed - int(seen["weights_bytes"])  # type: ignore[call-overload]
    return VllmStartup.model_validate(seen)


def _record(seen: dict[str, object], key: str, m: re.Match[str], consumed: int | None) -> int | None:
    """Store one matched line's figures under VllmStartup's names; returns the DEBUG 'consumed' figure."""
    if key == "kv_gpu":
        value = _bytes(m["gib"])
        previous = seen.get("kv_cache_bytes")
        seen["kv_cache_bytes"] = value if previous is None else min(int(previous), value)  # type: ignore[call-overload]
    elif key == "kv_cpu":
        seen["kv_cache_bytes"] = _bytes(m["gib"])
    elif key == "tokens":
        seen["device"], seen["kv_tokens"] = m["device"], _number(m["tokens"])
    elif key == "concurrency":
        seen["max_model_len"], seen["max_concurrency"] = _number(m["len"]), float(m["x"])
    elif key == "graph_pool":
        seen["cuda_graph_bytes"], seen["cuda_graph_estimate_bytes"] = _bytes(m["actual"]), _bytes(m["est"])
    elif key == "graphs_took":
        seen.setdefault("cuda_graph_bytes", _bytes(m["gib"]))
    elif key == "cuda_total":
        seen["start_free_bytes"] = _bytes(m["free"] or m["free2"])
        seen["cuda_total_bytes"] = _bytes(m["total"] or m["total2"])
    elif key == "consumed":
        return _bytes(m["gib"])
    else:  # weights, peak, non_torch: one GiB figure each
        seen[{"weights": "weights_bytes", "peak": "activation_bytes", "non_torch": "non_torch_bytes"}[key]] = _bytes(
            m["gib"]
        )
    return consumed


def check_running(runtime: Runtime, folder: Path) -> PlanCheck | None:
    """The folder's plan against its server's log (for `status`); None when either cannot be read."""
    from r4b_deploy.deployment import load_deployment
    from r4b_deploy.planning.drift import check_log

    try:
        plan = load_deployment(folder).plan
        text = runtime.log_tail(folder, STARTUP_LOG_LINES)
    except Exception:  # status answers whatever the folder holds; the check is extra information
        return None
    return check_log(plan, text)
