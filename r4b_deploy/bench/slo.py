"""SLO gates: `--slo p95_ttft_ms=500` turns a benchmark into a pass/fail check for CI.

A gate names any scalar metric of `LevelMetrics.flat()` (the JSON keys). `NAME=X` means "no
worse than X": at most X for latencies, error counts and rates; at least X for throughputs.
`NAME<=X` and `NAME>=X` say the direction outright. `ttft_p95_ms` is accepted for
`p95_ttft_ms` (metric first, as people often write it). A gate holds for every level of the
sweep; a metric with no value (no successful request) fails it.

Failed requests are a gate of their own: the run fails if a level's error rate is above
`max_error_rate` (default 0: any failed request fails the run).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from r4b_deploy.bench.metrics import DISTRIBUTIONS, STATS, metric_names
from r4b_deploy.bench.report import BenchReport, SloResult
from r4b_deploy.errors import UsageError

Op = Literal["<=", ">="]
ERROR_RATE_METRIC = "error_rate"
# Metrics where more is better; every other metric is "at most".
_HIGHER_IS_BETTER = ("request_throughput", "output_throughput", "total_token_throughput", "completed")
_GATE_RE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|=)\s*([-+0-9.eE]+)\s*$")
_SWAPPED_RE = re.compile(r"^(?P<metric>.+)_(?P<stat>" + "|".join(STATS) + r")_ms$")


class SloGate(BaseModel):
    model_config = ConfigDict(frozen=True)

    metric: str
    op: Op
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return value <= self.threshold if self.op == "<=" else value >= self.threshold


def valid_metric_names() -> list[str]:
    return metric_names()


def _canonical(name: str, valid: list[str]) -> str | None:
    if name in valid:
        return name
    swapped = _SWAPPED_RE.match(name)
    if swapped and swapped["metric"] in DISTRIBUTIONS:
        candidate = f"{swapped['stat']}_{swapped['metric']}_ms"
        if candidate in valid:
            return candidate
    return None


def parse_slo(text: str) -> SloGate:
    """`p95_ttft_ms=500`, `ttft_p95_ms<=500`, `output_throughput>=900` -> a gate; else UsageError."""
    valid = valid_metric_names()
    match = _GATE_RE.match(text)
    if not match:
        raise UsageError(
            f"--slo {text!r}: expected NAME=VALUE, NAME<=VALUE or NAME>=VALUE",
            fix="e.g. --slo p95_ttft_ms=500 --slo output_throughput>=900",
        )
    name, op, raw = match.groups()
    metric = _canonical(name, valid)
    if metric is None:
        raise UsageError(f"--slo {text!r}: unknown metric {name!r}; valid names: {', '.join(valid)}")
    try:
        threshold = float(raw)
    except ValueError:
        raise UsageError(f"--slo {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(threshold):  # a NaN gate never passes, an infinite one never fails
        raise UsageError(f"--slo {text!r}: {raw!r} is not a finite number", fix="give the limit as a plain number")
    if op == "=":
        op = ">=" if metric in _HIGHER_IS_BETTER else "<="
    return SloGate(metric=metric, op=op, threshold=threshold)  # type: ignore[arg-type]


def evaluate_slos(report: BenchReport, gates: list[SloGate], max_error_rate: float = 0.0) -> list[SloResult]:
    """Every gate at every level, plus the error-rate gate; the report itself is not changed."""
    all_gates = [*gates, SloGate(metric=ERROR_RATE_METRIC, op="<=", threshold=max_error_rate)]
    results: list[SloResult] = []
    for level in report.levels:
        flat = level.metrics.flat()
        for gate in all_gates:
            value = flat.get(gate.metric)
            value = float(value) if value is not None else None
            results.append(
                SloResult(
                    gate=str(gate),
                    metric=gate.metric,
                    op=gate.op,
                    threshold=gate.threshold,
                    level=level.label,
                    value=value,
                    passed=gate.holds(value),
                )
            )
    return results


def format_value(value: float | None) -> str:
    """A gate's figure for people: 17,539 rather than 1.754e+04, 8.483 rather than 8.48312."""
    if value is None:
        return "no value"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def violations_line(results: list[SloResult]) -> str:
    """One line naming each failed gate with its figure, for the CheckFailed message."""
    failed = [r for r in results if not r.passed]
    parts = []
    for r in failed:
        parts.append(f"{r.metric} = {format_value(r.value)} at {r.level} (wanted {r.op} {r.threshold:g})")
    return "; ".join(parts)
