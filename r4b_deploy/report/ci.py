"""What CI reads: the GitHub Actions step summary, and bench's gates as JUnit XML.

A gate at a level is one test case (`bench.<level>`, named as the user wrote the gate), so a CI
system lists which gate failed where, as it lists smoke's checks (`checks/junit.py` writes both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic

if TYPE_CHECKING:
    from r4b_deploy.bench.report import BenchReport, SloResult

STEP_SUMMARY_VAR = "GITHUB_STEP_SUMMARY"
# GitHub refuses a step summary over 1 MiB; keep well under it, with a line saying so.
STEP_SUMMARY_MAX_BYTES = 1000 * 1000
BENCH_SUITE_NAME = "r4b-deploy bench gates"
BENCH_CLASSNAME_PREFIX = "bench"
_CUT_NOTE = "\n\n*(cut: the summary is over GitHub's limit; the full report is in the artifacts)*\n"


def append_step_summary(markdown: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append `markdown` to the file `GITHUB_STEP_SUMMARY` names; None when it is not set.

    Appended, not replaced: every step of a job adds to the one file GitHub shows."""
    target = environ.get(STEP_SUMMARY_VAR)
    if not target:
        return None
    data = markdown.encode("utf-8")
    if len(data) > STEP_SUMMARY_MAX_BYTES:
        data = data[:STEP_SUMMARY_MAX_BYTES].decode("utf-8", "ignore").encode("utf-8") + _CUT_NOTE.encode()
    path = Path(target)
    try:
        with path.open("ab") as handle:
            handle.write(data if data.endswith(b"\n") else data + b"\n")
    except OSError as exc:
        from r4b_deploy.errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"{STEP_SUMMARY_VAR}={target}: cannot append the summary: {exc.strerror or exc}",
            fix=f"point {STEP_SUMMARY_VAR} at a writable file, or unset it outside GitHub Actions",
        ) from None
    return path


def bench_junit_xml(report: BenchReport) -> str:
    """One test case per gate per level, its message the figure with its interval; an inconclusive
    gate is an <error> (neither held nor broken), its message how many runs would decide it."""
    from r4b_deploy.bench.slo import format_value, inconclusive_line, violations_line
    from r4b_deploy.checks.junit import JUnitCase, junit_document

    outcomes = {"pass": "pass", "fail": "fail", "inconclusive": "error"}
    cases = []
    for r in report.slo:
        where = f"{r.level} {r.mode}" if r.mode else r.level
        if r.verdict == "inconclusive":
            message = f"inconclusive: {inconclusive_line([r])}"
        elif r.verdict == "fail":
            message = violations_line([r]) + _interval(r)
        else:
            message = f"{r.metric} = {format_value(r.value)} at {where} (wanted {r.op} {r.threshold:g})" + _interval(r)
        cases.append(
            JUnitCase(
                classname=f"{BENCH_CLASSNAME_PREFIX}.{where}",
                name=r.gate,
                time_s=0.0,
                outcome=outcomes[r.verdict],  # type: ignore[arg-type]
                message=message,
                failure_type="GateFailed" if r.verdict == "fail" else "GateInconclusive",
            )
        )
    from datetime import datetime, timezone

    try:
        started = datetime.strptime(report.date, "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        started = datetime.now(timezone.utc)
    properties = [
        ("url", report.base_url),
        ("model_id", report.model_id),
        ("workload", report.workload),
        ("thinking_mode", report.mode),
        ("max_tokens", str(report.max_tokens)),
    ]
    duration_s = sum(lv.metrics.duration_s for lv in report.levels)
    return junit_document(BENCH_SUITE_NAME, cases, time_s=duration_s, timestamp=started, properties=properties)


def _interval(result: SloResult) -> str:
    """The gate's interval as "; 95% interval 412..538 over 3 runs"; "" when judged without one."""
    from r4b_deploy.bench.slo import format_value

    if result.ci_low is None or result.ci_high is None or result.confidence is None:
        return ""
    runs = f"{result.runs} run{'s' if result.runs != 1 else ''}"
    return (
        f"; {result.confidence:.0%} interval {format_value(result.ci_low)}..{format_value(result.ci_high)} over {runs}"
    )


def write_bench_junit(report: BenchReport, path: Path) -> Path:
    write_text_atomic(Path(path), bench_junit_xml(report), mode=REPORT_FILE_MODE)
    return Path(path)


def up_markdown(up: Mapping[str, Any]) -> str:
    """`up`'s step summary from its report (up.json's content): the verdict, what failed, the bench."""
    problems = [
        *up.get("smoke_failures", []),
        *([f"bench: {up['bench_error']}"] if up.get("bench_error") else []),
        *(f"bench gate: {line}" for line in up.get("bench_gate_failures", [])),
    ]
    kind = "CPU rehearsal" if up.get("rehearsal") else f"profile {up.get('profile')}"
    lines = [
        f"# r4b-deploy up: {'FAILED' if problems else 'ok'}",
        "",
        f"{_md(up.get('url'))} · {kind} · runtime {up.get('runtime')} · served model name "
        f"`{_md(up.get('served_model_name'))}`",
        "",
        f"Smoke: {up.get('smoke_passed')} passed, {up.get('smoke_failed')} failed.",
    ]
    if problems:
        lines += ["", "## Problems", "", *(f"- {_md(p)}" for p in problems)]
    summary = up.get("bench_summary") or []
    if summary:
        keys = list(summary[0])
        lines += ["", f"## Bench ({up.get('bench')})", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_md(_cell(row.get(k))) for k in keys) + " |" for row in summary]
    if up.get("warnings"):
        lines += ["", "## Warnings", "", *(f"- {_md(w)}" for w in up["warnings"])]
    lines += ["", f"Report folder: `{_md(up.get('report_dir'))}` ({', '.join(map(str, up.get('files', [])))})", ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "–" if value is None else str(value)


def _md(value: Any) -> str:
    """Text for a Markdown line or table cell: no table breaks, no raw HTML from a server's words."""
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
