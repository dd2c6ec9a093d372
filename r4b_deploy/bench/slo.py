"""SLO gates: `--slo p95_ttft_ms=500` turns a benchmark into a pass/fail check for CI.

A gate names any scalar metric of `LevelMetrics.flat()` (the JSON keys). `NAME=X` means "no
worse than X": at most X for latencies, error counts and rates; at least X for throughputs.
`NAME<=X` and `NAME>=X` say the direction outright. `ttft_p95_ms` is accepted for
`p95_ttft_ms` (metric first, as people often write it); `max_NAME=X` / `min_NAME=X` say the
direction in the name (`max_cut_off_thinking_rate=0.1`). A gate holds for every level of the
sweep; a metric with no value (no successful request) fails it.

`MODE:NAME=X` (`short:p95_ttft_ms=300`) gates one thinking mode: its figures at every level that
ran it (its own level with `--mode auto,long,short`, its share of a `mix` level), from the
per-mode names (`mode_metric_names()`: latency percentiles, `cut_off_thinking_rate`, ...). A
mode gate that no level ran fails, rather than passing unseen.

Failed requests are a gate of their own: the run fails if a level's error rate is above
`max_error_rate` (default 0: any failed request fails the run).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from r4b_deploy.bench.metrics import DISTRIBUTIONS, STATS, LevelMetrics, metric_names, mode_metric_names
from r4b_deploy.bench.report import BenchReport, LevelResult, SloResult
from r4b_deploy.errors import UsageError

if TYPE_CHECKING:
    from r4b_deploy.bench.confidence import Extract, Interval

Op = Literal["<=", ">="]
Verdict = Literal["pass", "fail", "inconclusive"]
ERROR_RATE_METRIC = "error_rate"
# Metrics where more is better; every other metric is "at most".
_HIGHER_IS_BETTER = ("request_throughput", "output_throughput", "total_token_throughput", "completed")
_GATE_RE = re.compile(r"^\s*(?:([A-Za-z]+)\s*:\s*)?([A-Za-z0-9_.]+)\s*(<=|>=|=)\s*([-+0-9.eE]+)\s*$")
_DIRECTION_PREFIXES: dict[str, Op] = {"max_": "<=", "min_": ">="}
# Names a gate may still use after a metric was renamed: old -> new (a part of the name).
_RENAMED = {"first_answer_token": "time_to_first_answer"}
_SWAPPED_RE = re.compile(r"^(?P<metric>.+)_(?P<stat>" + "|".join(STATS) + r")_ms$")


class SloGate(BaseModel):
    model_config = ConfigDict(frozen=True)

    metric: str
    op: Op
    threshold: float
    mode: str | None = None  # a thinking mode: the gate judges that mode's figures only
    level: str | None = None  # a level's label: the gate judges that level only (a baseline's gates)
    baseline: float | None = None  # the earlier run's figure the threshold was derived from (--baseline)

    def __str__(self) -> str:
        prefix = f"{self.mode}: " if self.mode else ""
        against = f" (baseline {format_value(self.baseline)})" if self.baseline is not None else ""
        return f"{prefix}{self.metric} {self.op} {self.threshold:g}{against}"

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return value <= self.threshold if self.op == "<=" else value >= self.threshold


def higher_is_better(metric: str) -> bool:
    return metric in _HIGHER_IS_BETTER


def valid_metric_names() -> list[str]:
    return metric_names()


def _canonical(name: str, valid: list[str]) -> str | None:
    for old, new in _RENAMED.items():
        name = name.replace(old, new)
    if name in valid:
        return name
    swapped = _SWAPPED_RE.match(name)
    if swapped and swapped["metric"] in DISTRIBUTIONS:
        candidate = f"{swapped['stat']}_{swapped['metric']}_ms"
        if candidate in valid:
            return candidate
    return None


def _directed(name: str, valid: list[str]) -> tuple[str | None, Op | None]:
    """The metric a gate names and the direction its name says (`max_x`: at most), if any."""
    metric = _canonical(name, valid)
    if metric is not None:
        return metric, None
    for prefix, op in _DIRECTION_PREFIXES.items():
        if name.startswith(prefix):
            metric = _canonical(name.removeprefix(prefix), valid)
            if metric is not None:
                return metric, op
    return None, None


def parse_slo(text: str) -> SloGate:
    """`p95_ttft_ms=500`, `ttft_p95_ms<=500`, `output_throughput>=900`, `short:p95_ttft_ms=300`
    -> a gate; else UsageError."""
    match = _GATE_RE.match(text)
    if not match:
        raise UsageError(
            f"--slo {text!r}: expected NAME=VALUE, NAME<=VALUE or NAME>=VALUE (MODE:NAME=VALUE: one thinking mode)",
            fix="e.g. --slo p95_ttft_ms=500 --slo output_throughput>=900 --slo short:p95_ttft_ms=300",
        )
    mode, name, op, raw = match.groups()
    if mode is not None:
        from r4b_deploy.spec import model_spec

        modes = model_spec().thinking.modes
        if mode not in modes:
            raise UsageError(f"--slo {text!r}: unknown thinking mode {mode!r}; the modes: {', '.join(modes)}")
    valid = mode_metric_names() if mode else valid_metric_names()
    metric, named_op = _directed(name, valid)
    if metric is None:
        what = f"per-mode metric (for {mode}:)" if mode else "metric"
        raise UsageError(f"--slo {text!r}: unknown {what} {name!r}; valid names: {', '.join(valid)}")
    if named_op is not None:
        if op != "=" and op != named_op:
            raise UsageError(f"--slo {text!r}: {name!r} says {named_op}, the gate says {op}", fix="write NAME=VALUE")
        op = named_op
    try:
        threshold = float(raw)
    except ValueError:
        raise UsageError(f"--slo {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(threshold):  # a NaN gate never passes, an infinite one never fails
        raise UsageError(f"--slo {text!r}: {raw!r} is not a finite number", fix="give the limit as a plain number")
    if op == "=":
        op = ">=" if higher_is_better(metric) else "<="
    return SloGate(metric=metric, op=op, threshold=threshold, mode=mode)  # type: ignore[arg-type]


def evaluate_slos(
    report: BenchReport, gates: list[SloGate], max_error_rate: float = 0.0, *, seed: int | None = None
) -> list[SloResult]:
    """Every gate at every level, plus the error-rate gate; the report itself is not changed.

    Each gate's value gets a bootstrap interval over the level's runs and requests
    (`bench/confidence.py`; `seed`: the report's by default, so a verdict is reproducible). The
    error-rate gate is judged on the failures counted, not on an interval: a failed request
    observed is a fact, not an estimate.
    """
    error_gate = SloGate(metric=ERROR_RATE_METRIC, op="<=", threshold=max_error_rate)
    results: list[SloResult] = []
    judged: set[SloGate] = set()
    for level in report.levels:
        flat = level.metrics.flat()
        mode_flats = {name: mm.flat() for name, mm in level.metrics.modes.items()}
        values: dict[SloGate, float | None] = {}
        for gate in gates:
            if gate.level is not None and gate.level != level.label:
                continue  # a baseline's gate judges its own level only
            if gate.mode is None:
                value = flat.get(gate.metric)
            elif gate.mode in mode_flats:
                value = mode_flats[gate.mode].get(gate.metric)
            else:
                continue  # this level did not run the gate's mode
            values[gate] = None if value is None else float(value)
        intervals = _intervals(level, list(values), report.seed if seed is None else seed)
        runs = max(1, len(level.runs))
        for gate, value in values.items():
            judged.add(gate)
            results.append(_result(gate, level.label, value, intervals.get(str(gate)), runs))
        errors = flat.get(ERROR_RATE_METRIC)
        results.append(_result(error_gate, level.label, None if errors is None else float(errors), None, runs))
    for gate in gates:
        if gate.mode is not None and gate not in judged:
            results.append(_result(gate, f"no level ran mode {gate.mode}", None, None, 1))
    return results


def _intervals(level: LevelResult, gates: list[SloGate], seed: int) -> dict[str, Interval | None]:
    from r4b_deploy.bench.confidence import RunSlice, bootstrap_intervals

    def extract(gate: SloGate) -> Extract:
        def value(m: LevelMetrics) -> float | None:
            if gate.mode is None:
                return m.flat().get(gate.metric)
            mm = m.modes.get(gate.mode)
            return None if mm is None else mm.flat().get(gate.metric)

        return value

    runs = level.runs or [RunSlice(requests=len(level.records), duration_s=level.metrics.duration_s)]
    return bootstrap_intervals(level.records, runs, {str(g): extract(g) for g in gates}, seed=seed)


def _result(gate: SloGate, level: str, value: float | None, interval: Interval | None, runs: int) -> SloResult:
    if value is None:
        return SloResult(
            gate=str(gate), metric=gate.metric, op=gate.op, threshold=gate.threshold, level=level, value=None,
            passed=False, mode=gate.mode, verdict="fail", runs=runs, baseline=gate.baseline,
        )  # fmt: skip
    # The interval always holds the figure itself (a percentile bootstrap may not, with few requests).
    low = value if interval is None else min(interval.low, value)
    high = value if interval is None else max(interval.high, value)
    low_holds, high_holds = gate.holds(low), gate.holds(high)
    verdict: Verdict = "inconclusive"
    if low_holds and high_holds:
        verdict = "pass"
    elif not (low_holds or high_holds):
        verdict = "fail"
    needed = None
    if verdict == "inconclusive" and interval is not None:
        from r4b_deploy.bench.confidence import runs_to_decide

        needed = runs_to_decide(runs, value, interval.model_copy(update={"low": low, "high": high}), gate.threshold)
    return SloResult(
        gate=str(gate),
        metric=gate.metric,
        op=gate.op,
        threshold=gate.threshold,
        level=level,
        value=value,
        passed=verdict == "pass",
        mode=gate.mode,
        verdict=verdict,
        ci_low=low,
        ci_high=high,
        confidence=None if interval is None else interval.confidence,
        runs=runs,
        runs_to_decide=needed,
        baseline=gate.baseline,
    )


def inconclusive_line(results: list[SloResult]) -> str:
    """One line naming each inconclusive gate, its interval and the runs that would likely decide it."""
    parts = []
    for r in results:
        if r.verdict != "inconclusive":
            continue
        metric = f"{r.mode}:{r.metric}" if r.mode else r.metric
        more = (
            f"about {r.runs_to_decide} runs in all (--repeat {r.runs_to_decide}) would likely decide it"
            if r.runs_to_decide
            else "the figure sits on the limit: no number of runs would decide it"
        )
        parts.append(
            f"{metric} = {format_value(r.value)} at {r.level}, {r.confidence or 0:.0%} interval"
            f" {format_value(r.ci_low)}..{format_value(r.ci_high)} straddles {r.op} {r.threshold:g}"
            f" after {r.runs} run{'s' if r.runs != 1 else ''}; {more}"
        )
    return "; ".join(parts)


def format_value(value: float | None) -> str:
    """A gate's figure for people: 17,539 rather than 1.754e+04, 8.483 rather than 8.48312."""
    if value is None:
        return "no value"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def violations_line(results: list[SloResult]) -> str:
    """One line naming each failed gate with its figure, for the CheckFailed message."""
    failed = [r for r in results if r.verdict == "fail"]
    parts = []
    for r in failed:
        metric = f"{r.mode}:{r.metric}" if r.mode else r.metric
        against = f", baseline {format_value(r.baseline)}" if r.baseline is not None else ""
        parts.append(f"{metric} = {format_value(r.value)} at {r.level} (wanted {r.op} {r.threshold:g}{against})")
    return "; ".join(parts)
