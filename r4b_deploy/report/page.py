"""One self-contained HTML page for people: the plan, the smoke checks, the bench and its gates.

The page is drawn from the very dictionaries the JSON files hold (`bench/writers.result_json`,
the models' `model_dump(mode="json")`), generically: a metric a later version adds shows up
without a change here, and every number on the page carries its exact JSON value in
`data-value` (the browser test compares them). No script, no external asset: a strict
Content-Security-Policy in the page itself forbids both, and the charts are inline SVG.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r4b_deploy import __version__
from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic
from r4b_deploy.report import svg

if TYPE_CHECKING:
    from r4b_deploy.bench.report import BenchReport
    from r4b_deploy.checks.smoke import SmokeReport
    from r4b_deploy.planning.plan import Plan

HTML_NAME = "report.html"  # `bench --out` and `up`'s report folder alike
TEMPLATE = "report/report.html.j2"
VERDICT_KEYS = ("status", "verdict", "passed", "ok")  # cells that get a pass/fail colour
# A level's keys that name the run, not a figure: shown once in the bench section's header.
RUN_KEYS = ("date", "backend", "model_id")
MODES_KEY = "modes"
# The figures a reader looks at first, when the level has them; the full table follows.
HEADLINE_KEYS = (
    "completed",
    "failed",
    "error_rate",
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "p95_ttft_ms",
    "median_time_to_first_answer_ms",
    "p95_time_to_first_answer_ms",
    "p95_tpot_ms",
    "p95_e2el_ms",
    "cut_off_thinking_rate",
    "client_cpu_fraction",  # the two figures that say whether the others can be trusted
    "burst_rate",
)
LATENCY_CHARTS = (
    ("ttft", "TTFT (ms)"),
    ("time_to_first_answer", "time to first answer token (ms)"),
    ("first_answer_token", "time to first answer token (ms)"),
    ("tpot", "TPOT (ms)"),
)
# A gate's columns in reading order (verdict, what, the figure and its interval); the rest follow.
GATE_KEYS = ("verdict", "gate", "level", "value", "ci_low", "ci_high", "confidence", "runs", "runs_to_decide")
GATE_REDUNDANT_KEYS = ("passed",)  # `verdict` says it, and an inconclusive gate is not "passed: no"
THROUGHPUT_KEY = "output_throughput"
MODE_COST_PARTS = (("mean_reasoning_tokens", "reasoning tokens"), ("mean_answer_tokens", "answer tokens"))


@dataclass(frozen=True)
class Cell:
    text: str
    key: str = ""  # the dotted JSON key of a figure ("p95_ttft_ms", "modes.auto.completed")
    value: str | None = None  # the figure as JSON writes it, for numbers
    css: str = ""


@dataclass
class Table:
    caption: str
    head: list[str]
    rows: list[list[Cell]]
    column: str = ""  # data-column of the body cells: which column holds which level


@dataclass
class Section:
    id: str
    title: str
    verdict: str | None = None  # "pass", "fail", "inconclusive"
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Any] = field(default_factory=list)  # trusted SVG markup
    items: list[str] = field(default_factory=list)  # reasons, failed gates, error samples
    # What makes the section's own figures doubtful: shown first, before any figure.
    warnings: list[str] = field(default_factory=list)


def display(value: Any) -> str:
    """A figure for people; the exact one stays in `data-value`."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(display(v) for v in value) or "–"
    return str(value)


def _cell(key: str, value: Any) -> Cell:
    number = _is_number(value)
    css = "num" if number else ""
    if key.rsplit(".", 1)[-1] in VERDICT_KEYS and isinstance(value, bool | str):
        css = _verdict_css(value)
    return Cell(display(value), key=key, value=json.dumps(value) if number else None, css=css)


def _verdict_css(value: bool | str) -> str:
    if isinstance(value, bool):
        return "pass" if value else "fail"
    return value if value in ("pass", "fail", "skip", "inconclusive") else ""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys: {"ttft": {"p95": 1}} -> {"ttft.p95": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif not isinstance(value, dict):
            out[name] = value
    return out


def key_value_table(caption: str, data: dict[str, Any], prefix: str = "") -> Table:
    flat = flatten(data)
    return Table(caption, ["", "value"], [[Cell(k), _cell(prefix + k, v)] for k, v in flat.items()])


def records_table(
    caption: str,
    records: list[dict[str, Any]],
    prefix: str,
    compact: bool = False,
    first: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
) -> Table:
    """A list of flat-ish dicts (checks, gates, tiers) as rows; columns are the union of keys,
    `first` leading, `drop` and those with no value in any row left out. `compact`: a nested
    dict stays one column, its figures written "key value; ..." (a check's figures differ from
    check to check: one column each would be mostly empty)."""
    rows = [{k: _compact(v) for k, v in r.items()} if compact else flatten(r) for r in records]
    head: list[str] = [k for k in first if any(k in row for row in rows)]
    for row in rows:
        head += [k for k in row if k not in head and k not in drop]
    head = [k for k in head if any(row.get(k) is not None for row in rows)]  # no column of dashes only
    body = [[_cell(f"{prefix}.{i}.{k}", row.get(k)) for k in head] for i, row in enumerate(rows)]
    return Table(caption, head, body)


def _compact(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return "; ".join(f"{k} {display(v)}" for k, v in flatten(value).items()) or None


def columns_table(
    caption: str, columns: list[tuple[str, dict[str, Any]]], prefix: Callable[[int], str], skip: tuple[str, ...] = ()
) -> Table:
    """Rows are metrics, columns are levels (or modes): fits any number of metrics. `prefix(i)`
    starts the JSON key of column i's figures ("levels.0.")."""
    flats = [(name, flatten({k: v for k, v in data.items() if k not in skip})) for name, data in columns]
    keys: list[str] = []
    for _, flat in flats:
        keys += [k for k in flat if k not in keys]
    rows = [[Cell(k), *(_cell(f"{prefix(i)}{k}", flat.get(k)) for i, (_, flat) in enumerate(flats))] for k in keys]
    return Table(caption, ["metric", *(name for name, _ in flats)], rows)


# ---------------------------------------------------------------- sections


def plan_section(plan: dict[str, Any]) -> Section:
    headline = {k: v for k, v in plan.items() if not isinstance(v, dict | list)}
    section = Section("plan", f"Plan: {plan.get('profile')}", notes=[str(plan.get("profile_description", ""))])
    section.tables = [
        key_value_table("the plan", headline, "plan."),
        key_value_table("vllm serve settings", plan.get("vllm", {}), "plan.vllm."),
        key_value_table("memory per GPU (bytes)", plan.get("memory", {}), "plan.memory."),
    ]
    if plan.get("gpus"):
        section.tables.append(records_table("GPUs", plan["gpus"], "plan.gpus"))
    if plan.get("tiers"):
        section.tables.append(records_table("tiers on this hardware", plan["tiers"], "plan.tiers"))
    section.items = list(plan.get("reasons", []))
    section.warnings = list(plan.get("warnings", []))
    return section


def smoke_section(smoke: dict[str, Any]) -> Section:
    verdict = "pass" if smoke.get("ok") else "fail"
    section = Section("smoke", "Smoke checks", verdict=verdict)
    section.notes = [
        f"{smoke.get('passed')} passed, {smoke.get('failed')} failed, {smoke.get('skipped')} skipped "
        f"against {smoke.get('url')} ({smoke.get('served_model_name')})"
    ]
    figures = {k: v for k, v in smoke.items() if k not in ("checks",)}
    section.tables = [
        records_table("checks", smoke.get("checks", []), "smoke.checks", compact=True),
        key_value_table("run and figures", figures, "smoke."),
    ]
    return section


def _level_name(level: dict[str, Any]) -> str:
    label = str(level.get("label", "?"))
    mode = level.get("thinking_mode")
    return f"{label} · {mode}" if mode and str(mode) not in label else label


def _level_prefix(i: int) -> str:
    return f"levels.{i}."


def bench_sections(bench: dict[str, Any]) -> list[Section]:
    levels: list[dict[str, Any]] = bench.get("levels", [])
    gates: list[dict[str, Any]] = bench.get("slo", [])
    run = Section("bench", f"Benchmark: {bench.get('model_id')} at {bench.get('base_url')}")
    run.notes = [
        " · ".join(
            f"{k} {display(bench.get(k))}"
            for k in ("date", "workload", "thinking_mode", "max_tokens", "ignore_eos", "seed", "tool")
            if k in bench
        )
    ]
    columns = [(_level_name(lv), lv) for lv in levels]
    headline = [(name, {k: lv[k] for k in HEADLINE_KEYS if k in lv}) for name, lv in columns]
    run.tables = [
        columns_table("headline figures per load level", headline, _level_prefix),
        columns_table("every figure per load level", columns, _level_prefix, skip=(*RUN_KEYS, MODES_KEY)),
    ]
    for i, lv in enumerate(levels):
        modes = lv.get(MODES_KEY) or {}
        if modes:
            run.tables.append(
                columns_table(
                    f"{_level_name(lv)}: per thinking mode",
                    list(modes.items()),
                    lambda j, names=list(modes), i=i: f"levels.{i}.modes.{names[j]}.",
                )
            )
    run.charts = latency_charts(levels) + mode_cost_charts(levels)
    run.warnings = list(bench.get("warnings", []))
    sections = [run]
    if gates:
        sections.append(gates_section(gates))
    return sections


def gate_verdict(gate: dict[str, Any]) -> str:
    """pass / fail / inconclusive: the gate's own verdict, or its `passed` (a result from before
    verdicts existed)."""
    verdict = gate.get("verdict")
    if verdict in ("pass", "fail", "inconclusive"):
        return str(verdict)
    return "pass" if gate.get("passed") else "fail"


def gates_section(gates: list[dict[str, Any]]) -> Section:
    """Each gate's verdict beside its figure and interval; what a failed or undecided gate means,
    in the words the terminal uses (bench/slo.py)."""
    from r4b_deploy.bench.report import SloResult
    from r4b_deploy.bench.slo import inconclusive_line, violations_line

    verdicts = [gate_verdict(g) for g in gates]
    verdict = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    drop = GATE_REDUNDANT_KEYS if all("verdict" in g for g in gates) else ()
    section = Section("gates", "Gates", verdict=verdict)
    section.tables = [records_table("gates", gates, "slo", first=GATE_KEYS, drop=drop)]
    results = [SloResult.model_validate(g) for g in gates]
    section.items = [
        *(f"fail: {violations_line([r])}" for r in results if r.verdict == "fail"),
        *(f"inconclusive: {inconclusive_line([r])}" for r in results if r.verdict == "inconclusive"),
    ]
    return section


def latency_charts(levels: list[dict[str, Any]]) -> list[Any]:
    """Latency against output throughput, p50 solid and p95 dashed, one line per thinking mode."""
    from r4b_deploy.render.jinja import trusted_html

    by_mode: dict[str, list[dict[str, Any]]] = {}
    for lv in levels:
        by_mode.setdefault(str(lv.get("thinking_mode", "")), []).append(lv)
    charts, drawn = [], set()
    for name, title in LATENCY_CHARTS:
        if title in drawn or not any(f"median_{name}_ms" in lv for lv in levels):
            continue
        drawn.add(title)
        series = []
        for mode, group in by_mode.items():
            for stat, dashed in (("median", False), ("p95", True)):
                key = f"{stat}_{name}_ms"
                points = [
                    svg.Point(lv[THROUGHPUT_KEY], lv[key], str(lv.get("label", "")))
                    for lv in group
                    if _is_number(lv.get(THROUGHPUT_KEY)) and _is_number(lv.get(key))
                ]
                if points:
                    label = "p50" if stat == "median" else stat
                    series.append(svg.Series(f"{mode} {label}" if len(by_mode) > 1 else label, points, dashed))
        if series:
            charts.append(trusted_html(svg.line_chart(f"{title} against throughput", "output tokens/s", title, series)))
    return charts


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mode_cost_charts(levels: list[dict[str, Any]]) -> list[Any]:
    """What each thinking mode costs: mean reasoning and answer tokens per reply."""
    from r4b_deploy.render.jinja import trusted_html

    rows = []
    for lv in levels:
        for mode, figures in (lv.get(MODES_KEY) or {}).items():
            values = [figures.get(key) for key, _ in MODE_COST_PARTS]
            if any(isinstance(v, int | float) for v in values):
                label = str(lv.get("label"))
                name = label if mode in label.split(", ") else f"{label} · {mode}"  # not "auto, c=4 · auto"
                rows.append((name, [float(v or 0) for v in values]))
    if not rows:
        return []
    parts = [name for _, name in MODE_COST_PARTS]
    return [trusted_html(svg.stacked_bars("tokens per reply by thinking mode", "mean tokens per reply", rows, parts))]


def up_section(up: dict[str, Any]) -> Section:
    failed = up.get("smoke_failures") or up.get("bench_error") or up.get("bench_gate_failures")
    section = Section("up", f"up: {up.get('url')}", verdict="fail" if failed else "pass")
    headline = {k: v for k, v in up.items() if not isinstance(v, dict | list)}
    section.tables = [
        key_value_table("the deployment", headline, "up."),
        key_value_table("timings (s)", up.get("timings_s", {}), "up.timings_s."),
    ]
    if up.get("replicas"):  # with replicas behind the router: how it spread the requests
        section.tables.append(records_table("requests per replica", up["replicas"], "up.replicas", first=("service",)))
    section.items = [
        *(f"smoke: {line}" for line in up.get("smoke_failures", [])),
        *(f"bench gate: {line}" for line in up.get("bench_gate_failures", [])),
    ]
    section.warnings = list(up.get("warnings", []))
    return section


# ---------------------------------------------------------------- the page


def render_report_html(
    *,
    plan: Plan | None = None,
    smoke: SmokeReport | None = None,
    bench: BenchReport | None = None,
    up: dict[str, Any] | None = None,
) -> str:
    """The page for whatever ran: `bench` gives only `bench`; `up` gives all four."""
    from r4b_deploy.render.jinja import render_template

    # Verdicts first, then the figures behind them, the plan's details last.
    sections: list[Section] = []
    if up is not None:
        sections.append(up_section(up))
    if smoke is not None:
        sections.append(smoke_section(smoke.model_dump(mode="json")))
    if bench is not None:
        from r4b_deploy.bench.writers import result_json

        run, *gates = bench_sections(result_json(bench))
        sections += [*gates, run]
    if plan is not None:
        sections.append(plan_section(plan.model_dump(mode="json")))
    verdicts = [s.verdict for s in sections if s.verdict]
    overall = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    title = "r4b-deploy up" if up is not None else "r4b-deploy bench"
    return render_template(
        TEMPLATE,
        title=title,
        overall=overall if verdicts else None,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        tool=f"r4b-deploy {__version__}",
        sections=sections,
    )


def write_report_html(path: Path, **parts: Any) -> Path:
    """`render_report_html(**parts)` to `path`, atomically, readable by the CI runner (0644)."""
    write_text_atomic(Path(path), render_report_html(**parts), mode=REPORT_FILE_MODE)
    return Path(path)
