"""Writers of one BenchReport: result JSON (vLLM's key names), Markdown, files on disk.

The JSON holds one object per load level, each shaped like a `vllm bench serve` result
(date, backend, model_id, num_prompts, request_rate, burstiness, max_concurrency, duration,
completed, ..., mean_ttft_ms, p99_e2el_ms), so tools that read vLLM's files read each level;
our additions (reasoning and answer tokens, first answer token, errors by kind, per-mode
figures, client CPU) sit beside them under names vLLM does not use.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from r4b_deploy import __version__
from r4b_deploy.atomic import REPORT_FILE_MODE, write_bytes_atomic, write_text_atomic
from r4b_deploy.bench.metrics import PERCENTILES
from r4b_deploy.bench.report import BenchReport, LevelResult
from r4b_deploy.bench.slo import format_value

RESULT_FORMAT_VERSION = 1
JSON_NAME = "bench.json"
MARKDOWN_NAME = "bench.md"
CHART_NAME = "bench.png"  # `bench --out` and `up`'s report folder alike


def _rate_value(rate: float | None) -> float | str:
    # vLLM writes an infinite rate as the string "inf" (JSON has no infinity).
    if rate is None or rate == math.inf:
        return "inf"
    return rate


def level_json(report: BenchReport, level: LevelResult, detailed: bool = False) -> dict[str, Any]:
    load = level.load
    out: dict[str, Any] = {
        "date": report.date,
        "backend": report.backend,
        "model_id": report.model_id,
        "num_prompts": level.metrics.num_prompts,
        "request_rate": _rate_value(load.request_rate if load.kind == "rate" else None),
        "burstiness": load.burstiness,
        "max_concurrency": load.in_flight_limit,
    }
    out.update(level.metrics.flat())
    m = level.metrics
    out.update(
        {
            "label": level.label,
            "workload": report.workload,
            "thinking_mode": level.mode or report.mode,
            "prompt_set": level.prompt_set,  # --prompts: the built-in set this level drew from (else null)
            "max_tokens": report.max_tokens,
            "ignore_eos": report.ignore_eos,
            "token_split_sources": m.token_split_sources,
            "reasoning_paths": m.reasoning_paths,
            "errors_by_kind": m.errors_by_kind,
            "error_samples": m.error_samples,
            "missing_usage": m.missing_usage,
            "modes": {name: mm.model_dump(mode="json") for name, mm in m.modes.items()},
            "client_cpu_s": level.client_cpu_s,
            "client_cpu_fraction": level.client_cpu_fraction,
            "tokenize_calls": level.tokenize_calls,
        }
    )
    if detailed:  # vLLM's detailed lists, per request
        recs = level.records
        out["input_lens"] = [r.prompt_tokens for r in recs]
        out["output_lens"] = [r.output_tokens for r in recs]
        out["ttfts"] = [r.ttft_s for r in recs]
        out["itls"] = [list(r.itl_s) for r in recs]
        out["errors"] = [r.error for r in recs]
        out["records"] = [r.to_json() for r in recs]
    return out


def result_json(report: BenchReport, detailed: bool = False) -> dict[str, Any]:
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "tool": f"r4b-deploy {__version__}",
        "date": report.date,
        "backend": report.backend,
        "base_url": report.base_url,
        "model_id": report.model_id,
        "workload": report.workload,
        "thinking_mode": report.mode,
        "max_tokens": report.max_tokens,
        "ignore_eos": report.ignore_eos,
        "seed": report.seed,
        "repeat": report.repeat,  # runs per level (--repeat): the gates' intervals span them
        "timeout_s": report.timeout_s,
        "warmup_requests": report.warmup_requests,
        "warmup_failed": report.warmup_failed,
        "percentiles": list(PERCENTILES),
        "levels": [level_json(report, lv, detailed) for lv in report.levels],
        "slo": [s.model_dump(mode="json") for s in report.slo],
        "slo_passed": report.slo_passed,
        "warnings": report.warnings,
    }


def _json_default(obj: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def render_json(report: BenchReport, detailed: bool = False) -> str:
    # allow_nan=False: a NaN would make the file unreadable to strict parsers; metrics use None.
    return json.dumps(result_json(report, detailed), indent=2, allow_nan=False, default=_json_default) + "\n"


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def render_markdown(report: BenchReport) -> str:
    lines = [
        f"# Benchmark: {report.model_id} at {report.base_url}",
        "",
        f"{report.date} · workload {report.workload} · thinking mode {report.mode} · max_tokens "
        f"{report.max_tokens}{' (ignore_eos)' if report.ignore_eos else ''} · seed {report.seed}",
        "",
        "## Throughput and latency per level",
        "",
        "| level | done | failed | req/s | out tok/s | TTFT p50 / p95 ms | TPOT p50 / p95 ms "
        "| ITL p50 ms | E2EL p50 / p95 ms | first answer p50 ms | client CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in report.levels:
        m = lv.metrics
        lines.append(
            f"| {lv.label} | {m.completed} | {m.failed} | {_fmt(m.request_throughput, 2)} | "
            f"{_fmt(m.output_throughput)} | {_fmt(m.ttft.median)} / {_fmt(m.ttft.percentiles.get('p95'))} | "
            f"{_fmt(m.tpot.median, 2)} / {_fmt(m.tpot.percentiles.get('p95'), 2)} | {_fmt(m.itl.median, 2)} | "
            f"{_fmt(m.e2el.median)} / {_fmt(m.e2el.percentiles.get('p95'))} | "
            f"{_fmt(m.time_to_first_answer.median)} | {lv.client_cpu_fraction:.0%} |"
        )
    lines += [
        "",
        "## Reasoning and answer tokens per thinking mode",
        "",
        "| level | mode | done | thought | mean reasoning tok | mean answer tok | cut off thinking "
        "| TTFT mean ms | first answer p50 / p95 ms | reasoning from |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in report.levels:
        for mm in lv.metrics.modes.values():
            thought = "–" if mm.thought_fraction is None else f"{mm.thought_fraction:.0%}"
            first = mm.time_to_first_answer
            paths = ", ".join(f"{k} {n}" for k, n in mm.reasoning_paths.items()) or "–"
            lines.append(
                f"| {lv.label} | {mm.mode} | {mm.completed} | {thought} | {_fmt(mm.mean_reasoning_tokens)} | "
                f"{_fmt(mm.mean_answer_tokens)} | {mm.truncated_reasoning} | {_fmt(mm.mean_ttft_ms)} | "
                f"{_fmt(first.median)} / {_fmt(first.percentiles.get('p95'))} | {paths} |"
            )
    failures = [lv for lv in report.levels if lv.metrics.failed]
    if failures:
        lines += ["", "## Errors", "", "| level | kind | count |", "|---|---|---|"]
        for lv in failures:
            for kind, count in lv.metrics.errors_by_kind.items():
                lines.append(f"| {lv.label} | {kind} | {count} |")
        samples = {s for lv in failures for s in lv.metrics.error_samples}
        lines += ["", *(f"- `{s}`" for s in sorted(samples))]
    if report.slo:
        lines += ["", "## SLO gates", "", "| gate | level | value | interval | result |", "|---|---|---|---|---|"]
        shown = {"pass": "pass", "fail": "**FAIL**", "inconclusive": "*inconclusive*"}
        for s in report.slo:
            interval = "–" if s.ci_low is None else f"{format_value(s.ci_low)} – {format_value(s.ci_high)}"
            lines.append(f"| `{s.gate}` | {s.level} | {format_value(s.value)} | {interval} | {shown[s.verdict]} |")
    if report.warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in report.warnings)]
    lines += [
        "",
        "TTFT: first token of any kind (reasoning or answer). First answer: first token after `</think>` "
        "(other tools: time to first output token). Cut off thinking: the token limit hit inside the think "
        "block, no answer. TPOT = (latency − TTFT) / (output tokens − 1). ITL: gaps between streamed chunks. "
        "Token counts are the server's (`usage`, or `/tokenize` of the split text), made to agree with the "
        "text received: a reply with no answer text has no answer tokens.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(
    report: BenchReport,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    chart_path: Path | None = None,
    detailed: bool = False,
) -> list[Path]:
    """Write the requested files; return the paths written."""
    written: list[Path] = []
    if json_path is not None:
        write_text_atomic(json_path, render_json(report, detailed), mode=REPORT_FILE_MODE)
        written.append(Path(json_path))
    if markdown_path is not None:
        write_text_atomic(markdown_path, render_markdown(report), mode=REPORT_FILE_MODE)
        written.append(Path(markdown_path))
    if chart_path is not None:
        from r4b_deploy.bench.chart import render_chart_png

        write_bytes_atomic(chart_path, render_chart_png(report), mode=REPORT_FILE_MODE)
        written.append(Path(chart_path))
    return written
