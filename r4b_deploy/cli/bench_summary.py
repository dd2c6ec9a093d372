"""`r4b-deploy bench`'s summary on the terminal: two tables that fit 80 columns, then the errors,
warnings and gates. Every figure (TPOT and ITL percentiles included) is in the JSON and Markdown;
these tables are what a person reads first, so they must never be cut off ("…")."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from r4b_deploy.bench.report import BenchReport, LevelResult

_PLAIN_WIDTH = 130  # console width when not a terminal
_MS_TWO_DECIMALS_BELOW = 10.0  # 3 significant figures: 8.48, 84.8, 848
_MS_ONE_DECIMAL_BELOW = 100.0


def _ms(value: float | None) -> str:
    """A latency for an 80-column table: 3 significant figures, no more than it needs."""
    if value is None:
        return "–"
    if value < _MS_TWO_DECIMALS_BELOW:
        return f"{value:.2f}"
    if value < _MS_ONE_DECIMAL_BELOW:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _load(lv: LevelResult) -> str:
    """The load of a level in a few characters: c=16 (in flight), 4/s (Poisson rate), ≤8 (a cap);
    after its prompt set when it has one (`--prompts`: hard c=4)."""
    load = lv.load
    prompts = f"{lv.prompt_set} " if lv.prompt_set else ""
    if load.kind == "concurrency":
        return f"{prompts}c={load.concurrency}"
    rate = "inf" if load.request_rate == math.inf else f"{load.request_rate:g}"
    return f"{prompts}{rate}/s" + (f"≤{load.max_concurrency}" if load.max_concurrency else "")


def _table(title: str, columns: tuple[str, ...], left: int) -> Table:
    """A borderless table: two spaces between columns, none at the edges (80 columns hold it)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < left else "right", no_wrap=True)
    return table


def print_summary(report: BenchReport, *, stderr: bool) -> None:
    """Two tables that fit an 80-column terminal (two-line headers, ms to 3 figures), then the
    errors, warnings and gates. Every figure, TPOT and ITL percentiles included, is in the JSON."""
    from rich.markup import escape

    from r4b_deploy.bench.slo import format_value
    from r4b_deploy.cli.output import console

    con = console(stderr=stderr)
    if not con.is_terminal:
        con.width = max(con.width, _PLAIN_WIDTH)  # logs and pipes: no wrapping at 80 columns
    con.print(f"bench: {escape(report.model_id)} at {escape(report.base_url)}", soft_wrap=True)
    several = len({lv.mode for lv in report.levels}) > 1
    lead = ("mode", "load") if several else ("load",)
    table = _table(
        "throughput and latency (ms)",
        (*lead, "ok", "fail", "req/s", "out\ntok/s", "TTFT\np50", "TTFT\np95", "TPOT\np50", "E2E\np95"),
        len(lead),
    )
    for lv in report.levels:
        m = lv.metrics
        table.add_row(
            *((escape(lv.mode), _load(lv)) if several else (_load(lv),)),
            str(m.completed),
            f"[bold red]{m.failed}[/]" if m.failed else "0",
            _fmt(m.request_throughput, 2),
            _fmt(m.output_throughput),
            _ms(m.ttft.median),
            _ms(m.ttft.percentiles.get("p95")),
            _ms(m.tpot.median),
            _ms(m.e2el.percentiles.get("p95")),
        )
    con.print(table)
    modes = _table(
        "thinking per mode (token means; 1st ans: time to first output token)",
        ("mode", "load", "ok", "thought", "reason\ntok", "answer\ntok", "cut off\nthinking", "1st ans\np50",
         "1st ans\np95"),
        2,
    )  # fmt: skip
    for lv in report.levels:
        for mm in lv.metrics.modes.values():
            first = mm.time_to_first_answer
            modes.add_row(
                escape(mm.mode),
                _load(lv),
                str(mm.completed),
                _share(mm.thought_fraction),
                _fmt(mm.mean_reasoning_tokens, 0),
                _fmt(mm.mean_answer_tokens, 0),
                _share(mm.cut_off_thinking_rate),
                _ms(first.median),
                _ms(first.percentiles.get("p95")),
            )
    con.print(modes)
    con.print("c=N: N requests in flight; R/s: Poisson arrivals; TPOT excludes the first token", style="dim")
    for lv in report.levels:
        if lv.metrics.errors_by_kind:
            kinds = ", ".join(f"{k} {n}" for k, n in lv.metrics.errors_by_kind.items())
            con.print(f"{escape(lv.label)}: errors: {kinds}")
            for sample in lv.metrics.error_samples[:2]:
                con.print(f"  {escape(sample)}")
    for warning in report.warnings:
        con.print(f"[yellow]warning:[/] {escape(warning)}")
    failed = [s for s in report.slo if not s.passed]
    if failed:
        for s in failed:
            tag = "[bold red]FAIL[/]" if s.verdict == "fail" else "[bold yellow]INCONCLUSIVE[/]"
            interval = f" ({format_value(s.ci_low)}..{format_value(s.ci_high)})" if s.ci_low is not None else ""
            con.print(f"{tag} {escape(s.gate)} at {escape(s.level)}: {format_value(s.value)}{interval}")
    else:
        gates = sorted({s.gate for s in report.slo})
        con.print(f"[green]all {len(gates)} gate(s) held at every level[/] ({escape(', '.join(gates))})")


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"
