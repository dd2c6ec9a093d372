"""The load generator: pre-flight, warm-up, then each load level of the sweep.

schedule (levels, arrivals) -> per-request records (client/aio.py) -> pure metrics -> report.
Library code: it never prints; a live display subscribes through `on_progress`.

Failures of single requests are data (records with an error kind). Only what makes the whole
run meaningless is raised: nothing listening, a rejected API key, a model the server does not
serve, or every warm-up request failing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from r4b_deploy.bench.config import BenchConfig
from r4b_deploy.bench.metrics import compute_metrics
from r4b_deploy.bench.report import BenchReport, LevelResult
from r4b_deploy.bench.schedule import LEVEL_MAX_S, LoadLevel
from r4b_deploy.bench.trust import level_warnings
from r4b_deploy.bench.workload import PreparedRequest, prepare_requests
from r4b_deploy.client.records import RequestRecord
from r4b_deploy.errors import EnvironmentProblem, UsageError

if TYPE_CHECKING:
    import aiohttp

    from r4b_deploy.client.aio import ChatOutcome

PROGRESS_INTERVAL_S = 0.1  # on_progress is called at most this often (plus at phase ends)
DATE_FORMAT = "%Y%m%d-%H%M%S"  # vLLM's
# Warm-up failures that no amount of load would change: raise instead of running the sweep.
_FATAL_KINDS = ("connection", "http_401", "http_404")
__all__ = ["BenchConfig", "BenchProgress", "run_bench"]  # BenchConfig lives in bench/config.py


@dataclass
class BenchProgress:
    """A snapshot for live displays. `total` is None in duration mode (see `elapsed_s`)."""

    phase: Literal["warmup", "load", "tokenize", "done"]
    level_index: int  # 0-based; -1 during warm-up
    levels: int
    label: str
    done: int
    failed: int
    total: int | None
    elapsed_s: float
    duration_s: float | None


ProgressCallback = Callable[[BenchProgress], None]


class _Run:
    """State shared by the levels of one run: session, request pool, progress throttle."""

    def __init__(self, config: BenchConfig, on_progress: ProgressCallback | None, levels: list[LoadLevel]) -> None:
        from r4b_deploy.client.aio import auth_headers
        from r4b_deploy.client.urls import redact_url
        from r4b_deploy.client.wire import stream_max_bytes

        self.config = config
        self.shown_url = redact_url(config.base_url)  # for messages and the report: no user:password@
        self.api_key = config.api_key.get_secret_value() if config.api_key else None
        self.headers = auth_headers(self.api_key)
        self.stream_max_bytes = stream_max_bytes(config.largest_max_tokens())
        # One pool per --mode; all built before the load starts (bodies are serialised ahead).
        # Keyed by (prompt set, mode): `prompt_set` is the set the current level draws from.
        self.pools = {
            (prompts, mode): prepare_requests(config.workload_spec(mode, prompts))
            for prompts in config.prompt_axis()
            for mode in config.modes
        }
        self.prompt_set: str | None = config.prompt_axis()[0]
        self.levels = levels
        self.points = len(config.points())  # levels of the whole sweep
        self.on_progress = on_progress
        self.clock_zero = time.perf_counter()
        self.session: aiohttp.ClientSession | None = None
        self._last_progress = 0.0
        self.next_index = 0  # the pool entry the next request uses (continues across levels)

    def progress(self, snapshot: BenchProgress, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.perf_counter()
        if force or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.on_progress(snapshot)

    def take_request(self, mode: str) -> PreparedRequest:
        pool = self.pools[(self.prompt_set, mode)]
        req = pool[self.next_index % len(pool)]
        self.next_index += 1
        return req

    async def send(self, req: PreparedRequest) -> ChatOutcome:
        from r4b_deploy.client.aio import stream_chat_outcome

        assert self.session is not None
        return await stream_chat_outcome(
            self.session,
            self.config.base_url,
            req.body,
            self.api_key,
            self.config.timeout_s,
            workload=req.workload,
            mode=req.mode,
            clock_zero_s=self.clock_zero,
            headers=self.headers,
            max_bytes=self.stream_max_bytes,
        )


def run_bench(config: BenchConfig, on_progress: ProgressCallback | None = None) -> BenchReport:
    """Run the whole sweep against a live endpoint and return the report (metrics per level).

    Raises EnvironmentProblem (nothing listening, key rejected, every warm-up request failed)
    and UsageError (a model the server does not serve, an impossible level).
    """
    from r4b_deploy.client.urls import check_endpoint_url

    check_endpoint_url(config.base_url, "base_url")
    levels = config.levels()
    if not levels:
        raise UsageError("no load level left to run", fix="lower the concurrency levels or raise --max-concurrency")
    if config.duration_s is not None:
        for level in levels:
            if level.kind == "rate" and level.request_rate == math.inf:
                raise UsageError(
                    "an infinite request rate needs a request count, not a duration",
                    fix="pass --requests N, or a finite --request-rate",
                )
    for level in levels:
        budget = config.request_budget(level)
        if level.kind == "rate" and budget is not None and budget / (level.request_rate or math.inf) > LEVEL_MAX_S:
            raise UsageError(
                f"request rate {level.request_rate:g}/s would take {budget / (level.request_rate or 1):.3g} s"
                f" to send {budget} requests (at most {LEVEL_MAX_S:g} s per level)",
                fix="raise the --request-rate, or pass --duration S",
            )
    return asyncio.run(_run(config, on_progress, levels))


async def _run(config: BenchConfig, on_progress: ProgressCallback | None, levels: list[LoadLevel]) -> BenchReport:
    from r4b_deploy.client.aio import open_session

    run = _Run(config, on_progress, levels)
    bounded = [lv.in_flight_limit for lv in levels if lv.in_flight_limit is not None]
    # The pool holds as many connections as any level keeps in flight (unbounded open loop: no cap).
    max_connections = max([*bounded, config.warmup_requests]) if len(bounded) == len(levels) else None
    date = datetime.now().strftime(DATE_FORMAT)
    warnings: list[str] = []
    async with open_session(max_connections, config.timeout_s) as session:
        run.session = session
        warnings += await _preflight(run)
        if config.input_len is not None:
            run.pools = await asyncio.to_thread(_sized_pools, run)
        warmup_failed = await _warmup(run)
        results = []
        for index, (prompt_set, mode, level) in enumerate(config.points()):
            run.prompt_set = prompt_set
            runs = [await _run_level(run, index, mode, level) for _ in range(config.repeat)]
            results.append(runs[0] if len(runs) == 1 else merge_runs(runs))
    for result in results:
        warnings += level_warnings(result)
    if warmup_failed:
        warnings.append(f"{warmup_failed} of {config.warmup_requests} warm-up requests failed")
    if config.prompt_sets:
        from r4b_deploy.bench.prompts import plumbing_note

        warnings.append(plumbing_note(config.prompt_sets))
    return BenchReport(
        date=date,
        base_url=run.shown_url,
        model_id=config.model,
        workload=config.workload_label(),
        mode=",".join(config.modes),
        max_tokens=config.max_tokens,
        ignore_eos=config.ignore_eos,
        seed=config.seed,
        timeout_s=config.timeout_s,
        warmup_requests=config.warmup_requests,
        warmup_failed=warmup_failed,
        levels=results,
        warnings=warnings,
        repeat=config.repeat,
    )


async def _preflight(run: _Run) -> list[str]:
    """GET /v1/models: fail fast, in one line, on what no load level could change."""
    from r4b_deploy.client.aio import probe_models

    cfg = run.config
    assert run.session is not None
    probe = await probe_models(run.session, cfg.base_url, run.api_key, cfg.timeout_s)
    if probe.ok:
        if probe.models is not None and cfg.model not in probe.models:
            served = ", ".join(probe.models) or "none"
            raise UsageError(
                f"model {cfg.model!r} is not served at {run.shown_url} (it serves: {served})",
                fix=f"pass --model {probe.models[0]}" if probe.models else "check the server's --served-model-name",
            )
        return []
    _raise_fatal(run, probe.error_kind, probe.error, during="GET /v1/models")
    # A server with no /v1/models, or one failing it (5xx, 429): the load levels will measure it.
    return [f"pre-flight GET /v1/models failed ({probe.error}); the run went on"]


def _raise_fatal(run: _Run, kind: str | None, error: str, during: str) -> None:
    url = run.shown_url
    if kind == "connection":
        raise EnvironmentProblem(
            f"nothing answers at {url}: {error}",
            fix="start the server (r4b-deploy up) or pass the right --url",
        )
    if kind == "timeout":
        raise EnvironmentProblem(
            f"{url} stopped answering ({during}): {error}",
            fix="check the server (r4b-deploy status / logs), or raise --timeout",
        )
    if kind == "http_401":
        what = "rejected the API key" if run.api_key else "wants an API key and none was given"
        raise EnvironmentProblem(
            f"{url} {what} (HTTP 401)",
            fix="pass --api-key KEY, or --deployment DIR to read the key from the deployment's env file",
        )
    if kind == "http_404" and during != "GET /v1/models":
        raise UsageError(f"{url}: {error}", fix="check --url and --model (the server's --served-model-name)")


async def _warmup(run: _Run) -> int:
    """Send the warm-up requests (not measured); return how many failed."""
    n = run.config.warmup_requests
    if n == 0:
        return 0
    t0 = time.perf_counter()
    n_levels = run.points
    modes = run.config.modes
    run.progress(BenchProgress("warmup", -1, n_levels, "warm-up", 0, 0, n, 0.0, None), force=True)
    # The modes in turn, so each mode's prompt shape has been through the server once.
    outcomes = await asyncio.gather(*(run.send(run.take_request(modes[i % len(modes)])) for i in range(n)))
    failed = [o.record for o in outcomes if not o.record.success]
    elapsed = time.perf_counter() - t0
    run.progress(BenchProgress("warmup", -1, n_levels, "warm-up", n, len(failed), n, elapsed, None), force=True)
    if len(failed) == n:
        first = failed[0]
        _raise_fatal(run, first.error_kind, first.error, during="warm-up")
        raise EnvironmentProblem(
            f"every warm-up request failed ({n} of {n}); the first: {first.error_kind}: {first.error}",
            fix="check the server (r4b-deploy smoke, status, logs); --warmup 0 skips this check",
        )
    run.next_index = 0  # the measured levels start at the top of the pool
    return len(failed)


def level_label(config: BenchConfig, mode: str, level: LoadLevel, prompt_set: str | None = None) -> str:
    """The level's name in tables and gates: its load, and its mode and prompt set when the sweep has several."""
    label = f"{mode}, {level.label}" if len(config.modes) > 1 else level.label
    return f"{prompt_set}, {label}" if prompt_set and len(config.prompt_sets) > 1 else label


def _sized_pools(run: _Run) -> dict[tuple[str | None, str], list[PreparedRequest]]:
    """--input-len: the text pools rebuilt with prompts sized in the server's tokens, from a few
    /tokenize calls per mode (the mode's chat template is part of the prompt), before any load."""
    from r4b_deploy.bench.workload import calibrate_prompt_words, modes_for
    from r4b_deploy.client.errors import ClientError
    from r4b_deploy.client.http import EndpointClient

    cfg = run.config
    assert cfg.input_len is not None
    pools = {}
    with EndpointClient(cfg.base_url, run.api_key, cfg.timeout_s, cfg.model) as client:
        for mode in cfg.modes:
            spec = cfg.workload_spec(mode)
            sent_mode = modes_for(mode)[0]  # type: ignore[arg-type]  # mix: the template of its first mode

            def count(messages: list[dict], sent_mode: str = sent_mode) -> int:
                return client.tokenize(messages=messages, mode=sent_mode)

            try:
                words = calibrate_prompt_words(spec, cfg.input_len, count)
            except ClientError as exc:
                raise EnvironmentProblem(
                    f"cannot size prompts to --input-len {cfg.input_len}: POST /tokenize at {run.shown_url}: {exc}",
                    fix="pass --prompt-words N instead (for a server without /tokenize)",
                ) from None
            pools[(None, mode)] = prepare_requests(spec.model_copy(update={"prompt_words": words}))
    return pools


async def _run_level(run: _Run, index: int, mode: str, level: LoadLevel) -> LevelResult:
    cfg = run.config
    label = level_label(cfg, mode, level, run.prompt_set)
    budget = cfg.request_budget(level)
    outcomes: list[ChatOutcome] = []
    counts = {"done": 0, "failed": 0}
    t_start = time.perf_counter()
    cpu_start = time.process_time()

    def report_load(elapsed_s: float, force: bool = False) -> None:
        progress = BenchProgress(
            "load", index, run.points, label, counts["done"], counts["failed"], budget, elapsed_s, cfg.duration_s,
        )  # fmt: skip
        run.progress(progress, force=force)

    def finished(outcome: ChatOutcome) -> None:
        outcomes.append(outcome)
        counts["done"] += 1
        if not outcome.record.success:
            counts["failed"] += 1
        report_load(time.perf_counter() - t_start)

    if level.kind == "concurrency":
        await _closed_loop(run, mode, level.concurrency or 1, budget, t_start, finished)
    else:
        await _open_loop(run, mode, level, budget, t_start, finished)
    duration_s = time.perf_counter() - t_start
    cpu_s = time.process_time() - cpu_start
    report_load(duration_s, force=True)
    records, calls = await _count_answers(run, index, label, outcomes)
    return LevelResult(
        load=level,
        label=label,
        mode=mode,
        prompt_set=run.prompt_set,
        metrics=compute_metrics(records, duration_s),
        client_cpu_s=cpu_s,
        client_cpu_fraction=cpu_s / duration_s if duration_s > 0 else 0.0,
        tokenize_calls=calls,
        records=records,
    )


async def _closed_loop(
    run: _Run,
    mode: str,
    concurrency: int,
    budget: int | None,
    t_start: float,
    finished: Callable[[ChatOutcome], None],
) -> None:
    """N workers; each sends its next request when its last one ends."""
    deadline = t_start + run.config.duration_s if run.config.duration_s is not None else None
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while True:
            if budget is not None and sent >= budget:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            sent += 1
            finished(await run.send(run.take_request(mode)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _open_loop(
    run: _Run,
    mode: str,
    level: LoadLevel,
    budget: int | None,
    t_start: float,
    finished: Callable[[ChatOutcome], None],
) -> None:
    """Requests leave on the schedule's clock, whatever the server's speed (capped in flight
    by `max_concurrency` when set: a request waiting for a slot is sent when one frees)."""
    offsets = run.config.level_offsets_s(level)
    gate = asyncio.Semaphore(level.max_concurrency) if level.max_concurrency else None

    async def one(req: PreparedRequest) -> None:
        if gate is None:
            finished(await run.send(req))
            return
        async with gate:
            outcome = await run.send(req)
        finished(outcome)

    tasks = []
    for offset in offsets:
        delay = t_start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(run.take_request(mode))))
    await asyncio.gather(*tasks)


async def _count_answers(
    run: _Run, index: int, label: str, outcomes: list[ChatOutcome]
) -> tuple[list[RequestRecord], int]:
    """After the load phase: count answers that share a reply with reasoning, by /tokenize.

    reasoning tokens = completion tokens − answer tokens. A count that fails leaves both None.
    """
    from r4b_deploy.client.aio import count_tokens

    pending = [i for i, o in enumerate(outcomes) if o.answer_text is not None]
    records = [o.record for o in outcomes]
    if not pending:
        return records, 0
    run.progress(BenchProgress("tokenize", index, run.points, label, 0, 0, len(pending), 0.0, None), force=True)
    assert run.session is not None
    counts = await count_tokens(
        run.session,
        run.config.base_url,
        run.config.model,
        [outcomes[i].answer_text for i in pending],
        run.api_key,
    )
    for i, count in zip(pending, counts, strict=True):
        rec = records[i]
        if count is not None and rec.output_tokens is not None:
            answer = min(count, rec.output_tokens)
            records[i] = rec.replace(
                answer_tokens=answer, reasoning_tokens=rec.output_tokens - answer, token_split_source="tokenize"
            )
    return records, len(pending)


def merge_runs(runs: list[LevelResult]) -> LevelResult:
    """The `--repeat` runs of one level as one level: metrics over all their requests (throughput
    over their summed durations), the records kept run by run (`runs`) for the gates' intervals."""
    from r4b_deploy.bench.confidence import RunSlice

    records = [rec for r in runs for rec in r.records]
    duration_s = sum(r.metrics.duration_s for r in runs)
    cpu_s = sum(r.client_cpu_s for r in runs)
    first = runs[0]
    return LevelResult(
        load=first.load,
        label=first.label,
        mode=first.mode,
        prompt_set=first.prompt_set,
        metrics=compute_metrics(records, duration_s),
        client_cpu_s=cpu_s,
        client_cpu_fraction=max(r.client_cpu_fraction for r in runs),  # the warning is about the worst run
        tokenize_calls=sum(r.tokenize_calls for r in runs),
        records=records,
        runs=[RunSlice(requests=len(r.records), duration_s=r.metrics.duration_s) for r in runs],
    )
