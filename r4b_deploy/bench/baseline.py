"""Regression gates against an earlier bench JSON (`--baseline FILE --regression-tolerance 10%`).

Each compared metric at each level becomes an ordinary `SloGate` for that level whose limit is
the baseline's figure moved by the tolerance (`p95_ttft_ms <= 1.1 x baseline`; throughputs
`>= 0.9 x baseline`). The gate is then judged like any other: the current figure's confidence
interval against that limit — which is the interval of the ratio current/baseline against
1 ± tolerance, the baseline's figure taken as exact (run the baseline with `--repeat` for a
steadier reference). Only a like-for-like comparison means anything, so a baseline whose
workload differs (levels, modes, workload kind, token limits, prompt size) is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r4b_deploy.bench.slo import SloGate, higher_is_better, valid_metric_names
from r4b_deploy.errors import UsageError

if TYPE_CHECKING:
    from r4b_deploy.bench.config import BenchConfig
    from r4b_deploy.bench.report import BenchReport

DEFAULT_TOLERANCE = 0.10  # a 10% move is past run-to-run wobble on a quiet server, and worth a look
# Compared unless the user names others: what a user of the endpoint feels, per vLLM's names.
DEFAULT_REGRESSION_METRICS = (
    "median_ttft_ms",
    "p95_ttft_ms",
    "median_tpot_ms",
    "p95_e2el_ms",
    "p95_time_to_first_answer_ms",
    "output_throughput",
)
PROMPT_TOKENS_TOLERANCE = 0.10  # prompts of the same recipe differ this much at most (other seed)
_TOLERANCE_RE = re.compile(r"^\s*(?:([A-Za-z0-9_]+)\s*=\s*)?([0-9.]+)\s*(%?)\s*$")


def parse_tolerances(texts: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`10%` (every compared metric), `p95_ttft_ms=20%`, `0.1` -> {metric or "": fraction}."""
    out: dict[str, float] = {}
    valid = valid_metric_names()
    for text in texts:
        match = _TOLERANCE_RE.match(text)
        if not match:
            raise UsageError(
                f"--regression-tolerance {text!r}: expected PERCENT% or METRIC=PERCENT%",
                fix="e.g. --regression-tolerance 10% --regression-tolerance p95_ttft_ms=20%",
            )
        metric, number, percent = match.groups()
        if metric is not None and metric not in valid:
            raise UsageError(f"--regression-tolerance {text!r}: unknown metric {metric!r}; valid: {', '.join(valid)}")
        fraction = float(number) / 100 if percent else float(number)
        if not 0 <= fraction < 1:
            raise UsageError(f"--regression-tolerance {text!r}: must be at least 0% and below 100%")
        out[metric or ""] = fraction
    return out


def load_baseline(path: Path) -> dict[str, Any]:
    """An earlier `bench --json` result; a file that is not one is a usage error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--baseline {path}: cannot read it as JSON ({exc})", fix="pass a bench --json file") from None
    if not isinstance(data, dict) or not isinstance(data.get("levels"), list):
        raise UsageError(f"--baseline {path}: not a bench result (no 'levels')", fix="pass a bench --json file")
    return data


def check_workload(baseline: dict[str, Any], config: BenchConfig, path: Path) -> None:
    """Refuse, before any load, a baseline that ran another workload: its figures measure something else."""
    from r4b_deploy.bench.runner import level_label

    labels = [level_label(config, mode, level, prompt_set) for prompt_set, mode, level in config.points()]
    mine = {
        "levels": labels,
        "thinking_mode": ",".join(config.modes),
        "workload": config.workload,
        "max_tokens": config.max_tokens,
        "ignore_eos": config.ignore_eos,
    }
    theirs = {**{k: baseline.get(k) for k in mine}, "levels": [lv.get("label") for lv in baseline["levels"]]}
    differ = [f"{k} {theirs[k]!r} there, {mine[k]!r} here" for k in mine if theirs[k] != mine[k]]
    if differ:
        raise UsageError(
            f"--baseline {path} ran another workload: {'; '.join(differ)}",
            fix="rerun with the baseline's options (levels, --mode, --workload, --max-tokens), or make a new baseline",
        )


def check_prompt_tokens(baseline: dict[str, Any], report: BenchReport, path: Path) -> None:
    """After the run: the prompts the server counted must be of the baseline's size."""
    for theirs, level in zip(baseline["levels"], report.levels, strict=False):
        done, m = theirs.get("completed") or 0, level.metrics
        if not done or not m.completed:
            continue
        base, now = theirs.get("total_input_tokens", 0) / done, m.total_input_tokens / m.completed
        if abs(now - base) > PROMPT_TOKENS_TOLERANCE * base:
            raise UsageError(
                f"--baseline {path}: prompts of {base:.0f} tokens there, {now:.0f} here at {level.label}",
                fix="rerun with the baseline's prompt size, or make a new baseline",
            )


def regression_gates(baseline: dict[str, Any], tolerances: dict[str, float]) -> list[SloGate]:
    """One gate per compared metric per baseline level (metrics the baseline has no figure for are skipped)."""
    default = tolerances.get("", DEFAULT_TOLERANCE)
    named = [m for m in tolerances if m]
    metrics = list(dict.fromkeys([*DEFAULT_REGRESSION_METRICS, *named]))
    gates = []
    for level in baseline["levels"]:
        for metric in metrics:
            value = level.get(metric)
            if not isinstance(value, int | float):
                continue
            tolerance = tolerances.get(metric, default)
            up = higher_is_better(metric)
            threshold = value * (1 - tolerance) if up else value * (1 + tolerance)
            gates.append(
                SloGate(
                    metric=metric,
                    op=">=" if up else "<=",
                    threshold=threshold,
                    level=level.get("label"),
                    baseline=float(value),
                )
            )
    return gates
