"""`r4b-deploy bench`: throughput and latency of a running R-4B endpoint, per load level.

Options become a BenchConfig and one `run_bench` call; this module only parses, shows
progress, writes the requested files and prints the summary. Exit codes: 0 all gates held;
1 (CheckFailed) an SLO gate failed (its whole confidence interval breaks it), or more requests
failed than --max-error-rate allows (default 0: any failed request fails the run); 6
(GateInconclusive) a gate's interval straddles its limit and none failed; 2 nothing answers at the URL, the server
rejected the API key (a wrong key is a property of the endpoint, not of the measurement), or
every warm-up request failed; 4 a bad option, an unknown SLO metric, or a model the server
does not serve. Results are written before the exit code is decided.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from r4b_deploy.bench.schedule import LEVEL_MAX_S
from r4b_deploy.cli.bench_prompts import prompt_config, prompt_options
from r4b_deploy.cli.endpoint import endpoint_options, resolve_endpoint
from r4b_deploy.cli.options import FiniteFloatRange, bench_gate_options
from r4b_deploy.client.wire import REQUEST_TIMEOUT_MAX_S

if TYPE_CHECKING:
    from r4b_deploy.bench.report import BenchReport
    from r4b_deploy.bench.runner import BenchConfig, BenchProgress
    from r4b_deploy.bench.slo import SloGate

_STDOUT = "-"


def _mode_choices() -> list[str]:
    from r4b_deploy.spec import model_spec

    return [*model_spec().thinking.modes, "mix"]


def _split_numbers(values: tuple[str, ...], kind: type, option: str) -> list:
    """`--concurrency 1,4 --concurrency 16` -> [1, 4, 16]; `inf` allowed for rates."""
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                number = math.inf if kind is float and part.lower() == "inf" else kind(part)
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a number", param_hint=option) from None
            if not number > 0:
                raise click.BadParameter(f"{part!r} must be > 0", param_hint=option)
            out.append(number)
    return out


def _split_modes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """`--mode auto,long --mode short` -> ["auto", "long", "short"]; a mode the model lacks is refused."""
    choices = _mode_choices()
    modes = [part.strip() for value in values for part in value.split(",") if part.strip()]
    for mode in modes:
        if mode not in choices:
            raise click.BadParameter(f"{mode!r} is not one of {', '.join(choices)}", ctx=ctx, param=param)
    return modes or ["auto"]


@click.command("bench")
@endpoint_options
@click.option("--model", "model", help="Served model name (default: the deployment's, else r4b).")
@click.option(
    "--concurrency",
    "concurrency",
    multiple=True,
    metavar="N[,N...]",
    help="Closed-loop levels: requests kept in flight (default sweep 1,4,16,64).",
)
@click.option(
    "--request-rate",
    "request_rate",
    multiple=True,
    metavar="R[,R...]",
    help="Open-loop levels: requests per second (Poisson; 'inf' sends all at once).",
)
@click.option(
    "--burstiness",
    type=FiniteFloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Gamma shape of open-loop gaps: 1 Poisson, <1 burstier, >1 more regular.",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    help="Cap on requests in flight: drops higher levels (default: the deployment's max_num_seqs).",
)
@click.option("--requests", "requests_per_level", type=click.IntRange(min=1), help="Requests per level.")
@click.option(
    "--duration",
    "duration_s",
    type=FiniteFloatRange(min=0, min_open=True, max=LEVEL_MAX_S),
    help="Seconds per level (not --requests).",
)
@click.option(
    "--warmup", "warmup_requests", type=click.IntRange(min=0), default=4, show_default=True, help="Unmeasured requests."
)
@click.option("--workload", type=click.Choice(["text", "image"]), default="text", show_default=True)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    callback=_split_modes,
    metavar="MODE[,MODE...]",
    help="Thinking modes to sweep, each over every load level: auto, long, short, or mix (the modes in turn"
    " within one level). Default: auto.",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--ignore-eos", is_flag=True, help="Generate exactly --max-tokens (vLLM extension).")
@click.option("--temperature", type=FiniteFloatRange(min=0), help="Sampling temperature (default: the server's).")
@click.option(
    "--prompt-words",
    type=click.IntRange(min=1),
    default=48,
    show_default=True,
    help="Words per text prompt (tokens vary by tokenizer: --input-len sizes prompts in tokens).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(min=0, min_open=True, max=REQUEST_TIMEOUT_MAX_S),
    default=60.0,
    show_default=True,
    help="Seconds each request may take in all, stream included (raise it for long generations).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of prompts and arrival times.")
@bench_gate_options
@click.option("--json", "json_path", metavar="FILE", help="Write the result JSON ('-' for stdout).")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path), help="Write Markdown.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG chart.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write bench.json, bench.md, bench.png and report.html into this folder.",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the self-contained HTML report."
)
@click.option(
    "--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the gates as JUnit XML."
)
@click.option("--detailed", is_flag=True, help="Add per-request lists to the JSON (as vLLM's detailed mode).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run each level N times: gates judge a confidence interval over runs and requests (exit 6: inconclusive).",
)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An earlier bench --json of the same workload: gate on regressions from it.",
)
@click.option(
    "--regression-tolerance",
    "regression_tolerances",
    multiple=True,
    metavar="[METRIC=]PCT%",
    help="How far a metric may move against --baseline (default 10%), e.g. 5% or p95_ttft_ms=20% (repeatable).",
)
@prompt_options
def command(
    url: str | None,
    deployment_dir: Path | None,
    api_key: str | None,
    env_file: Path | None,
    model: str | None,
    concurrency: tuple[str, ...],
    request_rate: tuple[str, ...],
    burstiness: float,
    max_concurrency: int | None,
    requests_per_level: int | None,
    duration_s: float | None,
    warmup_requests: int,
    workload: str,
    modes: list[str],
    max_tokens: int,
    ignore_eos: bool,
    temperature: float | None,
    prompt_words: int,
    timeout_s: float,
    seed: int,
    slos: tuple[str, ...],
    max_error_rate: float,
    json_path: str | None,
    markdown_path: Path | None,
    chart_path: Path | None,
    out_dir: Path | None,
    html_path: Path | None,
    junit_path: Path | None,
    detailed: bool,
    no_progress: bool,
    repeat: int,
    baseline_path: Path | None,
    regression_tolerances: tuple[str, ...],
    prompt_source: dict,
) -> None:
    """Measure throughput and latency of a running R-4B endpoint, per load level and thinking mode.

    Latencies per level and mode, with percentiles: TTFT (first token of any kind), time to first
    answer (the first token after the reasoning: what other tools call time to first output
    token), TPOT, ITL, E2E; and the share of replies cut off while still thinking.
    """
    from pydantic import SecretStr

    from r4b_deploy.bench.slo import ERROR_RATE_METRIC, evaluate_slos, parse_slo, violations_line
    from r4b_deploy.errors import CheckFailed, UsageError

    if requests_per_level is not None and duration_s is not None:
        raise UsageError("--requests and --duration exclude each other", fix="give one of them")
    gates = [parse_slo(s) for s in slos]  # a bad gate is a usage error before any load is sent
    url, model, api_key, plan_cap = resolve_endpoint(url, model, api_key, env_file, deployment_dir)
    max_concurrency = max_concurrency or plan_cap
    if out_dir is not None:
        from r4b_deploy.bench.writers import CHART_NAME, JSON_NAME, MARKDOWN_NAME

        json_path = json_path or str(out_dir / JSON_NAME)
        markdown_path = markdown_path or out_dir / MARKDOWN_NAME
        chart_path = chart_path or out_dir / CHART_NAME
        html_path = html_path or out_dir / _html_name()
    _check_outputs(json_path, markdown_path, chart_path)
    _check_ci_outputs(html_path, junit_path)

    options: dict = {
        "base_url": url,
        "concurrencies": _split_numbers(concurrency, int, "--concurrency"),
        "request_rates": _split_numbers(request_rate, float, "--request-rate"),
        "burstiness": burstiness,
        "max_concurrency": max_concurrency,
        "requests_per_level": requests_per_level,
        "duration_s": duration_s,
        "warmup_requests": warmup_requests,
        "workload": workload,
        "modes": modes,
        "max_tokens": max_tokens,
        "ignore_eos": ignore_eos,
        "temperature": temperature,
        "prompt_words": prompt_words,
        "timeout_s": timeout_s,
        "seed": seed,
        "repeat": repeat,
    }
    if model:
        options["model"] = model
    if api_key:
        options["api_key"] = SecretStr(api_key)
    options.update(prompt_config(prompt_source, workload))
    config = _config(options)
    _check_mode_gates(gates, config.modes)
    baseline = _baseline_gates(baseline_path, regression_tolerances, config)
    gates += baseline[1] if baseline else []

    to_stdout = json_path == _STDOUT
    report = _run_with_progress(config, show=not no_progress, stderr=to_stdout)
    results = evaluate_slos(report, gates, max_error_rate)
    report = report.model_copy(update={"slo": results})
    _write(report, json_path, markdown_path, chart_path, detailed)
    _write_ci_outputs(report, html_path, junit_path)
    from r4b_deploy.cli.bench_summary import print_summary

    print_summary(report, stderr=to_stdout)
    if baseline is not None and baseline_path is not None:
        from r4b_deploy.bench.baseline import check_prompt_tokens

        check_prompt_tokens(baseline[0], report, baseline_path)
    if report.slo_failed:
        errors_failed = any(r.metric == ERROR_RATE_METRIC and not r.passed for r in results)
        raise CheckFailed(
            f"benchmark gates failed: {violations_line(results)}",
            fix=(
                "the errors above say what failed; --max-error-rate F allows a fraction of failed requests"
                if errors_failed
                else "the table above has every level's figures"
            ),
        )
    if not report.slo_passed:
        from r4b_deploy.bench.slo import inconclusive_line
        from r4b_deploy.errors import GateInconclusive

        raise GateInconclusive(
            f"benchmark gates inconclusive: {inconclusive_line(results)}",
            fix="rerun with more runs (--repeat N) or more requests per level (--requests N)",
        )


def _baseline_gates(
    path: Path | None, tolerances: tuple[str, ...], config: BenchConfig
) -> tuple[dict, list[SloGate]] | None:
    """The baseline (refused before any load when its workload differs) and its regression gates."""
    from r4b_deploy.bench.baseline import check_workload, load_baseline, parse_tolerances, regression_gates
    from r4b_deploy.errors import UsageError

    if path is None:
        if tolerances:
            raise UsageError("--regression-tolerance needs --baseline FILE", fix="add --baseline FILE or drop it")
        return None
    parsed = parse_tolerances(tolerances)
    data = load_baseline(path)
    check_workload(data, config, path)
    return data, regression_gates(data, parsed)


def _check_mode_gates(gates: list[SloGate], modes: list[str]) -> None:
    """A per-mode gate (`short:p95_ttft_ms=300`) whose mode the sweep does not run is a usage error
    before any load is sent, not a failed gate after it."""
    from r4b_deploy.bench.workload import modes_for
    from r4b_deploy.errors import UsageError

    run = {m for choice in modes for m in modes_for(choice)}  # type: ignore[arg-type]
    for gate in gates:
        if gate.mode is not None and gate.mode not in run:
            raise UsageError(
                f"--slo {gate}: the sweep runs no {gate.mode} requests (--mode {','.join(modes)})",
                fix=f"add it: --mode {','.join([*modes, gate.mode])}",
            )


def _config(options: dict) -> BenchConfig:
    """The options as a BenchConfig; a value the model refuses is a usage error naming its option."""
    from pydantic import ValidationError

    from r4b_deploy.bench.runner import BenchConfig
    from r4b_deploy.datafile import validation_problem
    from r4b_deploy.errors import UsageError

    try:
        return BenchConfig(**options)
    except ValidationError as exc:
        problem = validation_problem(exc)
        option = "--" + problem.top_field.removesuffix("_s").replace("_", "-")
        raise UsageError(f"{option}: {problem.message.lower()}", fix="see `r4b-deploy bench --help`") from None


def _check_outputs(json_path: str | None, markdown_path: Path | None, chart_path: Path | None) -> None:
    """Refuse an output path that cannot be written before the benchmark, not after it."""
    from r4b_deploy.atomic import require_writable

    if json_path and json_path != _STDOUT:
        require_writable(Path(json_path), "--json")
    if markdown_path is not None:
        require_writable(markdown_path, "--markdown")
    if chart_path is not None:
        require_writable(chart_path, "--chart")


def _write(
    report: BenchReport, json_path: str | None, markdown_path: Path | None, chart_path: Path | None, detailed: bool
) -> None:
    from r4b_deploy.bench.writers import render_json, write_outputs

    if json_path == _STDOUT:
        click.echo(render_json(report, detailed), nl=False)
        json_file = None
    else:
        json_file = Path(json_path) if json_path else None
    written = write_outputs(report, json_file, markdown_path, chart_path, detailed)
    for path in written:
        click.echo(f"wrote {path}", err=True)


def _run_with_progress(config: BenchConfig, *, show: bool, stderr: bool) -> BenchReport:
    """run_bench with a rich progress bar per level (on stderr, so stdout stays the data)."""
    from r4b_deploy.bench.runner import run_bench

    if not show:
        return run_bench(config)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from r4b_deploy.cli.output import console

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=False,
    )
    tasks: dict[str, int] = {}

    def on_progress(p: BenchProgress) -> None:
        key = f"{p.phase}:{p.level_index}"
        if p.phase == "tokenize":
            description = f"{p.label}: counting answers"
        elif p.phase == "warmup":
            description = "warm-up"
        else:
            description = f"{p.label} [{p.level_index + 1}/{p.levels}]"
        if p.duration_s is not None and p.phase == "load":  # duration mode: the bar is time
            total, completed = p.duration_s, min(p.elapsed_s, p.duration_s)
        else:
            total, completed = p.total, p.done
        if key not in tasks:
            tasks[key] = progress.add_task(description, total=total, failed=p.failed)
        progress.update(tasks[key], completed=completed, total=total, failed=p.failed)

    with progress:
        return run_bench(config, on_progress=on_progress)


def _html_name() -> str:
    from r4b_deploy.report.page import HTML_NAME

    return HTML_NAME


def _check_ci_outputs(html_path: Path | None, junit_path: Path | None) -> None:
    from r4b_deploy.atomic import require_writable

    for path, option in ((html_path, "--html"), (junit_path, "--junit")):
        if path is not None:
            require_writable(path, option)


def _write_ci_outputs(report: BenchReport, html_path: Path | None, junit_path: Path | None) -> None:
    """The HTML report, the gates' JUnit XML, and the Markdown in GitHub's step summary when it is set."""
    from r4b_deploy.bench.writers import render_markdown
    from r4b_deploy.report.ci import append_step_summary, write_bench_junit
    from r4b_deploy.report.page import write_report_html

    written = []
    if html_path is not None:
        written.append(write_report_html(html_path, bench=report))
    if junit_path is not None:
        written.append(write_bench_junit(report, junit_path))
    summary = append_step_summary(render_markdown(report))
    if summary is not None:
        written.append(summary)
    for path in written:
        click.echo(f"wrote {path}", err=True)
