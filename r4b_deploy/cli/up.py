"""`r4b-deploy up`: plan, render, build, launch, wait for health, smoke, bench, write the report.

Takes the planning options (as `plan`) and the render options (as `render`: the very same
click parameters, so the two never drift apart). Progress goes to stderr (a live display on a
terminal, plain lines in CI logs); the summary to stdout, or `--json` for machines. The API key
is never printed: the summary says which file holds it.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from r4b_deploy.cli.options import (
    FiniteFloatRange,
    FolderPath,
    bench_gate_options,
    plan_request_from,
    planning_options,
    runtime_option,
)
from r4b_deploy.cli.render import render_options, render_options_from
from r4b_deploy.launch.base import DEFAULT_RUNTIME, RuntimeName
from r4b_deploy.pipeline_report import BENCH_PRESET_NAMES

if TYPE_CHECKING:
    from r4b_deploy.pipeline_events import UpEvent
    from r4b_deploy.pipeline_report import BenchPreset, ReplicaServed, UpReport

DEFAULT_OUT_DIR = Path("deploy")
BUILD_TAIL_LINES = 6  # build output lines kept under the live display
PLAIN_HEALTH_EVERY_S = 10.0  # without a terminal, a health-wait line this often


class _Display:
    """Turns UpEvents into output on stderr: a rich live area on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.live = None
        self.current = ""
        self.tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL_LINES)
        self.last_step: int | None = None
        self.last_plain_tick_s = 0.0

    def __enter__(self) -> _Display:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def _render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        parts: list[Any] = [Spinner("dots", text=Text(self.current or "starting", overflow="ellipsis", no_wrap=True))]
        parts += [Text(f"  {line}", style="dim", overflow="ellipsis", no_wrap=True) for line in self.tail]
        return Group(*parts)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _print(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, soft_wrap=True)

    def __call__(self, event: UpEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}")
        handler(event)
        self._refresh()

    def _on_start(self, event: UpEvent) -> None:
        self.current = f"{event.stage} {event.message}".strip()
        self.tail.clear()
        if self.live is None and event.stage in ("build", "health", "bench"):
            self._print(f"... {self.current}")

    def _on_done(self, event: UpEvent) -> None:
        self._print(f"✓ {event.stage} {event.message} ({event.elapsed_s:.1f} s)".replace("  ", " "), "green")
        self.tail.clear()

    def _on_info(self, event: UpEvent) -> None:
        self._print(f"  {event.message}", "dim")

    def _on_line(self, event: UpEvent) -> None:
        line = event.data
        if line.step is not None:
            self.current = f"build: step {line.step}/{line.steps_total}"
        text = line.text.rstrip()
        self.tail.append(text)
        if self.live is None and line.step != self.last_step and text.lstrip().startswith("Step "):
            self._print(f"  {text.strip()}", "dim")
        self.last_step = line.step

    def _on_tick(self, event: UpEvent) -> None:
        elapsed = event.elapsed_s or 0.0
        self.current = f"waiting for /health: {elapsed:.0f} s"
        self.tail.clear()
        self.tail.extend((event.data or "").splitlines()[-BUILD_TAIL_LINES:])
        if self.live is None and elapsed - self.last_plain_tick_s >= PLAIN_HEALTH_EVERY_S:
            self.last_plain_tick_s = elapsed
            self._print(f"  still waiting for /health after {elapsed:.0f} s", "dim")

    def _on_progress(self, event: UpEvent) -> None:
        if event.stage == "smoke":
            check = event.data
            style = {"pass": "green", "fail": "bold red", "skip": "yellow"}.get(check.status)
            self._print(f"  {check.status:<4} {check.name}: {check.reason}", style)
        elif event.stage == "bench":
            p = event.data
            total = f"/{p.total}" if p.total else ""
            self.current = f"bench {p.phase} {p.label}: {p.done}{total} requests ({p.failed} failed)"


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual and SIGTERM (a cancelled CI job, a service manager)
    raises Terminated, a KeyboardInterrupt: `up` cleans up the same way for both. Each also sets the
    pipeline's flag, which its waits re-check (an interrupt swallowed inside a destructor must not
    leave `up` waiting). A signal the caller set to be ignored, or handles itself, is left so."""
    import signal

    from r4b_deploy.errors import Terminated
    from r4b_deploy.pipeline_events import clear_interrupt, request_interrupt

    def raising(kind: type[KeyboardInterrupt]) -> Callable[[int, object], None]:
        def handler(signum: int, frame: object) -> None:
            request_interrupt(kind)
            raise kind

        return handler

    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    kinds: dict[signal.Signals, type[KeyboardInterrupt]] = {
        signal.SIGINT: KeyboardInterrupt,
        signal.SIGTERM: Terminated,
    }
    ours = [sig for sig, default in defaults.items() if signal.getsignal(sig) is default]
    for sig in ours:
        signal.signal(sig, raising(kinds[sig]))
    try:
        yield
    finally:
        for sig in ours:
            signal.signal(sig, defaults[sig])
        clear_interrupt()


@click.command("up")
@click.option(
    "--out",
    "out_dir",
    type=FolderPath(file_okay=False),
    default=DEFAULT_OUT_DIR,
    show_default=True,
    help="The deployment folder (written, then launched from).",
)
@planning_options
@render_options
@runtime_option(default=DEFAULT_RUNTIME, help="Run the server in a container (docker) or as a local process (process).")
@click.option(
    "--bench",
    type=click.Choice(BENCH_PRESET_NAMES),
    default="quick",
    show_default=True,
    help="Benchmark after the smoke check: a short look, the full sweep, or none.",
)
@bench_gate_options
@click.option(
    "--health-timeout",
    "health_timeout_s",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="How long to wait for /health  [default: the rendered health check's start period].",
)
@click.option("--force", is_flag=True, help="Overwrite hand-edited files in the folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def command(
    out_dir: Path,
    runtime: RuntimeName,
    bench: BenchPreset,
    slos: tuple[str, ...],
    max_error_rate: float,
    health_timeout_s: float | None,
    force: bool,
    as_json: bool,
    **values: Any,
) -> None:
    """Plan, render, build, launch, wait for health, smoke and bench, in one go."""
    from r4b_deploy.bench.slo import parse_slo
    from r4b_deploy.errors import CheckFailed, GateInconclusive
    from r4b_deploy.pipeline import run_up

    gates = [parse_slo(s) for s in slos]  # a bad gate is a usage error before anything starts
    options = render_options_from(values)  # pops render's keys; the planning keys remain
    request = plan_request_from(values)

    with _Display() as display, _interrupt_flag():
        report = run_up(
            request,
            options,
            out_dir,
            runtime=runtime,
            bench=bench,
            gates=gates,
            max_error_rate=max_error_rate,
            health_timeout_s=health_timeout_s,
            force=force,
            on_event=display,
        )
    from r4b_deploy.report.ci import append_step_summary, up_markdown

    append_step_summary(up_markdown(report.model_dump(mode="json")))  # in GitHub Actions only
    if as_json:
        from r4b_deploy.cli.output import print_json

        print_json(report)
    else:
        _print_summary(report)
    if not report.ok:
        problems = report.problems()
        fix = (
            f"read {report.report_dir}; the server is still running "
            f"(stop it: r4b-deploy down --dir {report.deployment_dir})"
        )
        if report.bench_gate_failures:
            fix += "; --max-error-rate F allows a fraction of failed requests"
        if report.only_inconclusive:  # bench's rule: a failed gate wins, undecided ones get their own code
            raise GateInconclusive(
                f"the endpoint is up, but {len(problems)} bench gate(s) could not decide: {problems[0]}",
                fix=fix + "; run the bench with more requests or --repeat N",
            )
        raise CheckFailed(f"the endpoint is up, but {len(problems)} check(s) failed: {problems[0]}", fix=fix)


def _print_summary(report: UpReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from r4b_deploy.cli.output import console

    out = console()
    out.soft_wrap = True  # long paths and URLs stay on one line, whatever the width
    kind = "CPU rehearsal" if report.rehearsal else f"profile {report.profile}"
    url = escape(report.url)  # an IPv6 URL has brackets
    out.print(f"[bold green]R-4B is up[/bold green] at [bold]{url}[/bold] ({kind}, runtime {report.runtime})")
    out.print(f"  served model name: {report.served_model_name}", markup=False)
    out.print(f"  API key: in {report.api_key_file} (VLLM_API_KEY, mode 0600; send it as a Bearer token)", markup=False)
    if report.already_running:
        out.print("  the server was already running: reused, not started again", markup=False)
    if report.healthy_after_s is not None:
        out.print(f"  healthy {report.healthy_after_s:.0f} s after `up` started", markup=False)
    if report.build is not None:
        b = report.build
        how = (
            f"built in {b.duration_s:.0f} s ({b.steps_rebuilt} step(s) run, {b.steps_cached} from cache)"
            if b.built
            else "already built (content-addressed tag), nothing rebuilt"
        )
        out.print(f"  image {b.image_tag}: {how}", markup=False)
    smoke_style = "green" if report.smoke_ok else "bold red"
    out.print(
        f"  smoke: [{smoke_style}]{report.smoke_passed} passed, {report.smoke_failed} failed[/{smoke_style}]"
        + (" (protocol checks: the rehearsal model has random weights)" if report.rehearsal else "")
    )
    if report.bench_summary:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("level", "completed", "failed", "req/s", "output tok/s", "mean TTFT ms", "p95 TTFT ms"):
            table.add_column(column, justify="left" if column == "level" else "right")
        for row in report.bench_summary:
            table.add_row(
                str(row["level"]),
                _fmt(row.get("completed")),
                _fmt(row.get("failed")),
                _fmt(row.get("request_throughput")),
                _fmt(row.get("output_throughput")),
                _fmt(row.get("mean_ttft_ms")),
                _fmt(row.get("p95_ttft_ms")),
            )
        out.print(f"  bench ({report.bench}):")
        out.print(table)
    elif report.bench_error:
        out.print(f"  bench: [bold red]failed[/bold red]: {escape(str(report.bench_error))}")
    if report.replicas:  # how the router spread the requests, from each replica's /metrics
        out.print(f"  replicas: {', '.join(_replica_served(r) for r in report.replicas)}", markup=False)
    if report.plan_check is not None:  # the plan beside vLLM's own start-up figures
        for line in report.plan_check.summary_lines():
            out.print(f"  {line}", markup=False, soft_wrap=True)
    for warning in report.warnings:
        out.print(f"  [yellow]warning:[/yellow] {escape(warning)}")
    out.print(f"  report: {report.report_dir}/ ({', '.join(report.files)})", markup=False, soft_wrap=True)
    out.print(f"  stop it: r4b-deploy down --dir {report.deployment_dir}", markup=False, soft_wrap=True)


def _replica_served(replica: ReplicaServed) -> str:
    """One replica for the summary line: `replica-0 21 requests (16 in the bench)`, or `replica-1
    unknown` when its /metrics could not be read (a count never fails `up`)."""
    if replica.requests_served is None:
        return f"{replica.service} unknown"
    in_bench = f" ({replica.bench_requests} in the bench)" if replica.bench_requests is not None else ""
    return f"{replica.service} {replica.requests_served} requests{in_bench}"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)
