"""What `up` leaves in `DIR/report/`: the UpReport model and its files (plan, smoke, JUnit, bench, up.json).

The files are written with the checks' and the bench's own writers, so `up`'s report folder
holds the same files `smoke --json/--junit` and `bench --out` write.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic
from r4b_deploy.bench.writers import CHART_NAME, JSON_NAME, MARKDOWN_NAME
from r4b_deploy.errors import R4BError
from r4b_deploy.launch.base import BuildResult, RuntimeName
from r4b_deploy.planning.drift import PlanCheck
from r4b_deploy.report.page import HTML_NAME

if TYPE_CHECKING:
    from r4b_deploy.bench.report import BenchReport, SloResult
    from r4b_deploy.checks.smoke import SmokeReport
    from r4b_deploy.planning.plan import Plan

BenchPreset = Literal["quick", "full", "none"]
BENCH_PRESET_NAMES: tuple[BenchPreset, ...] = get_args(BenchPreset)

REPORT_DIR_NAME = "report"
PLAN_FILE = "plan.json"
SMOKE_FILE = "smoke.json"
JUNIT_FILE = "junit.xml"
BENCH_JSON_FILE = JSON_NAME
BENCH_MD_FILE = MARKDOWN_NAME
BENCH_CHART_FILE = CHART_NAME
UP_FILE = "up.json"
HTML_FILE = HTML_NAME
BENCH_SUMMARY_KEYS = ("completed", "failed", "request_throughput", "output_throughput", "mean_ttft_ms", "p95_ttft_ms")


INCONCLUSIVE_PREFIX = "inconclusive: "  # how an undecided gate is worded among the failures


class ReplicaServed(BaseModel):
    """One replica behind the router and the requests it served, from its own /metrics: how the
    router spread the load. None where its /metrics could not be read (shown as unknown)."""

    model_config = ConfigDict(frozen=True)

    service: str  # "replica-0": what `logs --replica 0` selects
    url: str  # its own loopback port, where /metrics was read
    requests_served: int | None = None  # since it started: smoke, bench and anything before `up`
    bench_requests: int | None = None  # during the bench alone (None: no bench, or a count unknown)


class UpReport(BaseModel):
    """What `up` did and where everything is. Never holds the API key: `api_key_file` says where it is."""

    model_config = ConfigDict(frozen=True)

    deployment_dir: Path
    report_dir: Path
    runtime: RuntimeName
    rehearsal: bool
    profile: str
    url: str
    served_model_name: str
    api_key_file: Path
    image_tag: str | None = None
    build: BuildResult | None = None  # None when the runtime builds nothing
    timings_s: dict[str, float] = {}
    healthy_after_s: float | None = None  # from the start of `up` to /health answering
    already_running: bool = False  # the folder's server was running: reused, not started again
    smoke_ok: bool | None = None
    smoke_passed: int | None = None
    smoke_failed: int | None = None
    smoke_failures: list[str] = []
    bench: BenchPreset = "none"
    bench_error: str | None = None
    # The bench gates (`bench`'s own: error rate, --slo) that failed, one line each; empty when all held.
    bench_gate_failures: list[str] = []
    bench_summary: list[dict[str, Any]] = []  # per load level: label, request throughput, output tok/s, TTFT
    files: list[str] = []  # report files written, relative to report_dir
    warnings: list[str] = []
    plan_check: PlanCheck | None = None  # the plan beside vLLM's start-up figures (also plan-check.md)
    replicas: list[ReplicaServed] = []  # with replicas behind the router: each one's requests; else empty

    @property
    def ok(self) -> bool:
        """The same verdict `smoke` and `bench` give: every smoke check passed, every bench gate held."""
        return self.smoke_ok is not False and self.bench_error is None and not self.bench_gate_failures

    @property
    def only_inconclusive(self) -> bool:
        """Not ok only because some bench gates could not decide (no check or gate failed): `up`
        then exits as `bench` does for that case, with its own code."""
        return (
            not self.ok
            and self.smoke_ok is not False
            and self.bench_error is None
            and all(line.startswith(INCONCLUSIVE_PREFIX) for line in self.bench_gate_failures)
        )

    def problems(self) -> list[str]:
        """One line per failed check or gate (empty when `ok`)."""
        problems = [*self.smoke_failures]
        if self.bench_error:
            problems.append(f"bench: {self.bench_error}")
        problems += [f"bench gate: {line}" for line in self.bench_gate_failures]
        return problems


def report_dir_of(folder: Path) -> Path:
    return folder / REPORT_DIR_NAME


def write_plan(plan: Plan, report_dir: Path) -> str:
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / PLAN_FILE, plan.model_dump_json(indent=2) + "\n", mode=REPORT_FILE_MODE)
    return PLAN_FILE


def write_smoke(smoke: SmokeReport, report_dir: Path) -> list[str]:
    """smoke.json and junit.xml, with the smoke command's own writers."""
    from r4b_deploy.checks.junit import write_junit
    from r4b_deploy.checks.report import write_json

    write_json(smoke, report_dir / SMOKE_FILE)
    write_junit(smoke, report_dir / JUNIT_FILE)
    return [SMOKE_FILE, JUNIT_FILE]


def write_bench(report: BenchReport, report_dir: Path, warnings: list[str]) -> list[str]:
    """bench.json, bench.md and the chart, with the bench package's own writers."""
    from r4b_deploy.bench.writers import write_outputs

    write_outputs(report, json_path=report_dir / BENCH_JSON_FILE, markdown_path=report_dir / BENCH_MD_FILE)
    written = [BENCH_JSON_FILE, BENCH_MD_FILE]
    try:
        write_outputs(report, chart_path=report_dir / BENCH_CHART_FILE)
        written.append(BENCH_CHART_FILE)
    except R4BError as exc:  # a chart that cannot be drawn: the figures are in the JSON and Markdown anyway
        warnings.append(f"no {BENCH_CHART_FILE}: {exc}")
    return written


def gate_failures(results: list[SloResult]) -> list[str]:
    """The failed gates, one line each, worded as `bench` words them."""
    from r4b_deploy.bench.slo import inconclusive_line, violations_line

    return [
        violations_line([r]) if r.verdict == "fail" else f"{INCONCLUSIVE_PREFIX}{inconclusive_line([r])}"
        for r in results
        if not r.passed
    ]


def bench_summary(report: BenchReport) -> list[dict[str, Any]]:
    """Per level, the few figures `up` prints; the full set is in bench.json."""
    out = []
    for level in report.levels:
        flat = level.metrics.flat()
        out.append({"level": level.label, **{k: flat.get(k) for k in BENCH_SUMMARY_KEYS}})
    return out


def write_up(
    report: UpReport, *, plan: Plan | None = None, smoke: SmokeReport | None = None, bench: BenchReport | None = None
) -> None:
    """up.json, and report.html: the page people read, with the plan, smoke and bench given."""
    from r4b_deploy.report.page import write_report_html

    write_text_atomic(report.report_dir / UP_FILE, report.model_dump_json(indent=2) + "\n", mode=REPORT_FILE_MODE)
    up = report.model_dump(mode="json")
    write_report_html(report.report_dir / HTML_FILE, plan=plan, smoke=smoke, bench=bench, up=up)
