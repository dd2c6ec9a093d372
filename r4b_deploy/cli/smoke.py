"""`r4b-deploy smoke`: check a running R-4B endpoint (text, images, each thinking mode).

Prints a table as checks finish; `--json FILE` / `--junit FILE` write the report for machines
and CI. Exit 0 when every check passed, 1 (CheckFailed) when any failed, 2 when nothing
answers at the URL. The API key is read from an option, the environment or the deployment's
env file, and never printed or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from r4b_deploy.cli.endpoint import endpoint_options, resolve_endpoint
from r4b_deploy.cli.options import FiniteFloatRange
from r4b_deploy.client.wire import REQUEST_TIMEOUT_MAX_S

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.table import Table

    from r4b_deploy.checks.smoke import CheckResult, SmokeConfig, SmokeReport

_STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}
_STDOUT = "-"


def _mode_choices() -> list[str]:
    from r4b_deploy.spec import model_spec

    return list(model_spec().thinking.modes)


@click.command("smoke")
@endpoint_options
@click.option("--model", "served_model_name", help="Served model name (default: the deployment's, else r4b).")
@click.option(
    "--mode",
    "mode",
    type=click.Choice(_mode_choices()),
    help="Check only this thinking mode (default: every mode).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(min=0, min_open=True, max=REQUEST_TIMEOUT_MAX_S),
    default=60.0,
    show_default=True,
    help="Seconds each request may take in all, streams included.",
)
@click.option(
    "--protocol-only",
    is_flag=True,
    help="Only protocol checks (for random-weight test models): no model-behaviour checks.",
)
@click.option("--json", "json_path", metavar="FILE", help="Write the report as JSON ('-' for stdout).")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report as JUnit XML for CI.",
)
def command(
    url: str | None,
    served_model_name: str | None,
    mode: str | None,
    timeout_s: float,
    api_key: str | None,
    env_file: Path | None,
    deployment_dir: Path | None,
    protocol_only: bool,
    json_path: str | None,
    junit_path: Path | None,
) -> None:
    """Check a running R-4B endpoint: text, image, each thinking mode."""
    from pydantic import SecretStr, ValidationError

    from r4b_deploy.atomic import require_writable
    from r4b_deploy.checks.smoke import SmokeConfig, run_smoke
    from r4b_deploy.datafile import validation_problem
    from r4b_deploy.errors import CheckFailed, UsageError

    url, served_model_name, api_key, _ = resolve_endpoint(url, served_model_name, api_key, env_file, deployment_dir)
    if json_path and json_path != _STDOUT:  # before the checks: a typo in a path costs nothing
        require_writable(Path(json_path), "--json")
    if junit_path:
        require_writable(junit_path, "--junit")

    options: dict = {"url": url, "timeout_s": timeout_s, "protocol_only": protocol_only}
    if served_model_name:
        options["served_model_name"] = served_model_name
    if api_key:
        options["api_key"] = SecretStr(api_key)
    if mode:
        options["modes"] = [mode]
    try:
        config = SmokeConfig(**options)
    except ValidationError as exc:  # what the options' types let through and the model refuses
        problem = validation_problem(exc)
        raise UsageError(
            f"{problem.top_field}: {problem.message.lower()}", fix="see `r4b-deploy smoke --help`"
        ) from None

    to_stdout = json_path == _STDOUT
    report = _run_with_table(config, run_smoke, stderr=to_stdout)
    if json_path:
        from r4b_deploy.checks.report import report_json, write_json

        if to_stdout:
            click.echo(report_json(report), nl=False)
        else:
            write_json(report, Path(json_path))
    if junit_path:
        from r4b_deploy.checks.junit import write_junit

        write_junit(report, junit_path)
    if not report.ok:
        failures = report.failures()
        names = ", ".join(c.name for c in failures)
        only_model = all(c.level == "model" for c in failures)
        raise CheckFailed(
            f"{report.failed} of {len(report.checks)} smoke checks failed: {names}",
            fix=(
                "a random-weight test model cannot pass model-behaviour checks: add --protocol-only"
                if only_model
                else "the table gives each check's reason"
            ),
        )


def _run_with_table(config: SmokeConfig, run_smoke: Callable[..., SmokeReport], *, stderr: bool) -> SmokeReport:
    """Run the checks, growing a rich table as each finishes (plain rows when not a terminal)."""
    from rich.live import Live

    from r4b_deploy.cli.output import console

    con = console(stderr=stderr)
    rows: list[CheckResult] = []
    live: Live | None = None  # started at the first result: an early error prints no empty table

    def on_check(result: CheckResult) -> None:
        nonlocal live
        rows.append(result)
        if live is None:
            live = Live(_table(rows, config.url), console=con, auto_refresh=False, transient=False)
            live.start()
        live.update(_table(rows, config.url), refresh=True)

    try:
        report = run_smoke(config, on_check=on_check)
    finally:
        if live is not None:
            live.stop()
    con.line()
    con.print(
        f"{report.passed} passed, {report.failed} failed, {report.skipped} skipped"
        f" in {report.duration_ms / 1000:.1f} s"
        + (f"; image prompt tokens: {_pairs(report.image_prompt_tokens)}" if report.image_prompt_tokens else "")
        + (f"; prompt tokens by mode: {_pairs(report.mode_prompt_tokens)}" if report.mode_prompt_tokens else "")
    )
    return report


def _pairs(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _table(rows: list[CheckResult], url: str) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from r4b_deploy.client.urls import redact_url

    table = Table(title=f"smoke: {escape(redact_url(url))}", title_justify="left")
    table.add_column("check")
    table.add_column("level")
    table.add_column("result")
    table.add_column("ms", justify="right")
    table.add_column("reason", overflow="fold")
    for r in rows:
        style = _STATUS_STYLE[r.status]
        table.add_row(r.name, r.level, f"[{style}]{r.status}[/]", f"{r.time_ms:.0f}", escape(r.reason))
    return table
