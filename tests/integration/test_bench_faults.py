"""`r4b-deploy bench` against real sockets that misbehave: every fault is a count or one line,
never a traceback or a hang. Fake servers come from tests/fixtures/servers.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from r4b_deploy.bench.runner import BenchConfig, run_bench
from r4b_deploy.cli.main import main
from r4b_deploy.errors import EnvironmentProblem, UsageError

pytestmark = pytest.mark.integration

SHORT = ["--concurrency", "2", "--requests", "6", "--max-tokens", "32", "--no-progress"]
WALL_BOUND_S = 30.0  # every faulty run here ends far sooner; a hang would not


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["bench", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_nothing_listening_is_exit_2_in_one_line(capsys, free_port_url: str) -> None:
    rc, out, err = run_cli(capsys, "--url", free_port_url, *SHORT)
    assert rc == 2
    line = assert_one_line_error(err)
    assert f"nothing answers at {free_port_url}" in line
    assert out == ""


def test_wrong_api_key_is_exit_2_and_never_printed(capsys, fake_openai_server) -> None:
    server = fake_openai_server()
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", "sk-wrong-secret-123", *SHORT)
    assert rc == 2
    line = assert_one_line_error(err)
    assert "rejected the API key (HTTP 401)" in line
    assert "sk-wrong-secret-123" not in err


def test_missing_api_key_says_so(capsys, fake_openai_server, monkeypatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    server = fake_openai_server()
    rc, _, err = run_cli(capsys, "--url", server.url, *SHORT)
    assert rc == 2
    assert "wants an API key and none was given" in assert_one_line_error(err)


def test_unknown_model_is_a_usage_error_naming_the_served_one(capsys, fake_openai_server) -> None:
    server = fake_openai_server()
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, "--model", "gpt-9", *SHORT)
    assert rc == 4
    line = assert_one_line_error(err)
    assert "'gpt-9' is not served" in line and "r4b" in line


@pytest.mark.parametrize(("status", "kind"), [(500, "http_5xx"), (429, "http_429")])
def test_errors_mid_run_are_counted_by_kind_and_fail_the_run(
    capsys, fake_openai_server, tmp_path, status, kind
) -> None:
    # Pre-flight (1) + warm-up (4) + 3 measured requests succeed; the rest fail.
    server = fake_openai_server(behaviour="status", status_code=status, fail_after=8)
    out_json = tmp_path / "r.json"
    args = ["--url", server.url, "--api-key", server.api_key, "--concurrency", "1", "--requests", "6"]
    rc, _, err = run_cli(capsys, *args, "--max-tokens", "32", "--no-progress", "--json", str(out_json))
    assert rc == 1
    line = assert_one_line_error(err)
    assert "error_rate = 0.5 at concurrency 1 (wanted <= 0)" in line
    level = json.loads(out_json.read_text())["levels"][0]  # results are written before the exit
    assert level["completed"] == 3 and level["failed"] == 3
    assert level["errors_by_kind"] == {kind: 3}
    assert any(f"HTTP {status}" in s for s in level["error_samples"])
    # The same run passes when the failures are allowed.
    server2 = fake_openai_server(behaviour="status", status_code=status, fail_after=8)
    args2 = ["--url", server2.url, "--api-key", server2.api_key, "--concurrency", "1", "--requests", "6"]
    rc2, _, _ = run_cli(capsys, *args2, "--max-tokens", "32", "--no-progress", "--max-error-rate", "0.5")
    assert rc2 == 0


def test_a_server_failing_everything_is_exit_2_after_the_warm_up(capsys, fake_openai_server) -> None:
    server = fake_openai_server(behaviour="status", status_code=500)
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, *SHORT)
    assert rc == 2
    assert "every warm-up request failed (4 of 4)" in assert_one_line_error(err)


def test_hanging_server_is_bounded_by_the_timeout(capsys, fake_openai_server) -> None:
    server = fake_openai_server(behaviour="hang")
    t0 = time.monotonic()
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, "--timeout", "1", *SHORT)
    assert time.monotonic() - t0 < WALL_BOUND_S
    assert rc == 2
    assert "stopped answering" in assert_one_line_error(err)


def test_stream_that_stalls_midway_is_a_timeout_record(fake_openai_server) -> None:
    server = fake_openai_server(behaviour="hang_mid_stream", chunks_before_fault=3)
    t0 = time.monotonic()
    report = run_bench(_config(server, timeout_s=1.0, warmup_requests=0, concurrencies=[2], requests_per_level=2))
    assert time.monotonic() - t0 < WALL_BOUND_S
    m = report.levels[0].metrics
    assert m.errors_by_kind == {"timeout": 2}
    rec = report.levels[0].records[0]
    assert rec.ttft_s is not None and "mid-stream" in rec.error  # it had started streaming


@pytest.mark.parametrize("behaviour", ["malformed_sse", "drop_mid_stream"])
def test_broken_streams_are_stream_errors(fake_openai_server, behaviour: str) -> None:
    server = fake_openai_server(behaviour=behaviour, chunks_before_fault=2)
    report = run_bench(_config(server, warmup_requests=0, concurrencies=[2], requests_per_level=4))
    m = report.levels[0].metrics
    assert m.errors_by_kind == {"stream": 4}
    if behaviour == "malformed_sse":
        assert "not JSON" in m.error_samples[0]


def test_broken_streams_fail_the_cli_run_with_the_kind(capsys, fake_openai_server) -> None:
    server = fake_openai_server(behaviour="malformed_sse")
    rc, out, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, "--warmup", "0", *SHORT)
    assert rc == 1
    assert "errors: stream 6" in out
    assert "error_rate = 1 at concurrency 2" in assert_one_line_error(err)


def _config(server, **kw) -> BenchConfig:
    from pydantic import SecretStr

    base = {"base_url": server.url, "api_key": SecretStr(server.api_key), "max_tokens": 64, "timeout_s": 10.0}
    base.update(kw)
    return BenchConfig(**base)


@pytest.mark.parametrize("reasoning_field", [None, "reasoning"])
def test_reasoning_and_answer_tokens_per_mode(fake_openai_server, reasoning_field: str | None) -> None:
    # The fake answers "The image is red." (4 tokens); thinking replies add 8 reasoning steps,
    # as <think>…</think> in the content (+ the tags and a blank line) or in a reasoning field.
    server = fake_openai_server(reasoning_field=reasoning_field)
    report = run_bench(_config(server, mode="mix", concurrencies=[3], requests_per_level=6))
    level = report.levels[0]
    modes = level.metrics.modes
    assert set(modes) == {"auto", "long", "short"}
    tags = 0 if reasoning_field else 1
    assert modes["short"].mean_reasoning_tokens == 0 and modes["short"].mean_answer_tokens == 4
    assert modes["short"].thought_fraction == 0
    # long: the prompt opened the block, so no <think> in the reply; "</think>" and "\n\n" follow.
    assert modes["long"].mean_reasoning_tokens == 8 + 2 * tags
    assert modes["long"].mean_answer_tokens == 4
    assert modes["auto"].mean_reasoning_tokens == 8 + 3 * tags
    assert modes["long"].thought_fraction == 1
    for mm in modes.values():
        assert mm.mean_first_answer_token_ms is not None
    # /tokenize counted only the answers that shared a reply with reasoning, after the load.
    assert level.tokenize_calls == 4
    assert all(r.success for r in level.records)


def test_reasoning_truncated_by_max_tokens(fake_openai_server) -> None:
    server = fake_openai_server()
    report = run_bench(_config(server, mode="long", max_tokens=5, concurrencies=[1], requests_per_level=2))
    mm = report.levels[0].metrics.modes["long"]
    assert mm.truncated_reasoning == 2
    assert mm.mean_answer_tokens == 0 and mm.mean_reasoning_tokens == 5
    assert mm.mean_first_answer_token_ms is None


def test_without_tokenize_the_split_is_unknown_and_said(fake_openai_server) -> None:
    server = fake_openai_server(tokenize=False)
    report = run_bench(_config(server, mode="long", concurrencies=[1], requests_per_level=2))
    assert report.levels[0].metrics.modes["long"].split_unknown == 2
    assert any("could not be counted apart from reasoning" in w for w in report.warnings)


def test_open_loop_rate_level(fake_openai_server) -> None:
    server = fake_openai_server()
    report = run_bench(_config(server, request_rates=[50.0], requests_per_level=10, max_concurrency=3))
    level = report.levels[0]
    assert level.label == "rate 50/s, max 3"
    assert level.metrics.completed == 10
    assert level.metrics.peak_concurrency <= 3


def test_duration_mode(fake_openai_server) -> None:
    server = fake_openai_server(chunk_delay_s=0.01)
    report = run_bench(_config(server, concurrencies=[2], duration_s=0.5, mode="short"))
    m = report.levels[0].metrics
    assert m.completed >= 2 and m.failed == 0
    assert 0.5 <= m.duration_s < 0.5 + 2.0  # in-flight requests finish after the deadline


def test_infinite_rate_with_a_duration_is_a_usage_error(fake_openai_server) -> None:
    server = fake_openai_server()
    with pytest.raises(UsageError):
        run_bench(_config(server, request_rates=[float("inf")], duration_s=1.0))


def test_image_workload_and_all_outputs(capsys, fake_openai_server, tmp_path: Path) -> None:
    server = fake_openai_server()
    out = tmp_path / "out"
    rc, stdout, err = run_cli(
        capsys,
        "--url",
        server.url,
        "--api-key",
        server.api_key,
        "--workload",
        "image",
        "--mode",
        "short",
        "--slo",
        "ttft_p95_ms=10000",
        "--out",
        str(out),
        *SHORT,
    )
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "bench.png", "report.html"]
    doc = json.loads((out / "bench.json").read_text())
    assert doc["workload"] == "image" and doc["slo_passed"] is True
    # 4 words + 4 message tokens + 6 (short mode) + the image's tokens: counted by the server.
    assert doc["levels"][0]["total_input_tokens"] > 6 * 14
    seen = [r.body for r in server.requests if r.path == "/v1/chat/completions"]
    assert seen and seen[0]["messages"][0]["content"][0]["type"] == "image_url"
    assert "concurrency 2" in stdout
    assert server.api_key not in stdout + err + (out / "bench.json").read_text() + (out / "bench.md").read_text()


def test_json_to_stdout_keeps_stdout_pure(capsys, fake_openai_server) -> None:
    server = fake_openai_server()
    rc, stdout, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, "--json", "-", *SHORT)
    assert rc == 0, err
    assert json.loads(stdout)["levels"][0]["completed"] == 6
    assert "concurrency 2" in err  # the table went to stderr


def test_unknown_slo_metric_fails_before_any_load(capsys, fake_openai_server) -> None:
    server = fake_openai_server()
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, "--slo", "latency=5", *SHORT)
    assert rc == 4
    assert "unknown metric 'latency'; valid names:" in assert_one_line_error(err)
    assert server.request_count == 0


def test_environment_problem_from_the_library(free_port_url: str) -> None:
    with pytest.raises(EnvironmentProblem):
        run_bench(BenchConfig(base_url=free_port_url, concurrencies=[1], requests_per_level=1))


def test_stream_chat_records_one_reply(fake_openai_server) -> None:
    import asyncio

    from r4b_deploy.client.aio import open_session, stream_chat

    server = fake_openai_server(chunk_delay_s=0.005)
    body = {
        "model": "r4b",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
        "chat_template_kwargs": {"thinking_mode": "auto"},
    }

    async def one():
        async with open_session(1, 10.0) as session:
            return await stream_chat(session, server.url + "/v1", body, server.api_key, 10.0, mode="auto")

    rec = asyncio.run(one())
    assert rec.success and rec.error_kind is None and rec.status_code == 200
    # <think>, 8 steps, </think>, "\n\n", 4 answer words: 15 chunks with text, 14 gaps.
    assert rec.output_tokens == 15 and len(rec.itl_s) == 14
    assert 0 < rec.ttft_s < rec.first_answer_token_s <= rec.latency_s
    assert rec.thought is True and rec.finish_reason == "stop" and not rec.truncated_reasoning
    # Both reasoning and answer in one reply, no split in usage: left for /tokenize after the load.
    assert rec.reasoning_tokens is None and rec.answer_tokens is None


# -- issue 11: bounded time, refused inputs, bounded memory -------------------------------------

TRICKLE_INTERVAL_S = 0.3  # a byte well within each read's timeout: only a total deadline ends a request
BOUND_SLACK_S = 3.0  # the event loop's own overhead on a busy 2-core machine, not a timing


def _bounded_cli(capsys, server, *args: str) -> tuple[int, str, float, float]:
    """Run the CLI; return (rc, stderr, elapsed, the bound BenchConfig derives from the same options)."""
    options = dict(zip(args[::2], args[1::2], strict=False))
    config = BenchConfig(
        base_url=server.url,
        concurrencies=[int(options.get("--concurrency", 2))],
        requests_per_level=int(options["--requests"]) if "--requests" in options else None,
        duration_s=float(options["--duration"]) if "--duration" in options else None,
        warmup_requests=int(options.get("--warmup", 4)),
        timeout_s=float(options["--timeout"]),
    )
    t0 = time.monotonic()
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, "--no-progress", *args)
    return rc, err, time.monotonic() - t0, config.time_bound_s()


@pytest.mark.parametrize(
    ("options", "args", "rc_expected", "phrase"),
    [
        ({"trickle_only_streams": True}, ["--warmup", "2", "--requests", "4"], 2, "stopped answering (warm-up)"),
        ({"trickle_only_streams": True}, ["--warmup", "0", "--requests", "4"], 1, "error_rate = 1"),
        ({"trickle_only_streams": True}, ["--warmup", "0", "--duration", "1"], 1, "error_rate = 1"),
        ({}, ["--warmup", "0", "--requests", "4"], 2, "stopped answering (GET /v1/models)"),
    ],
    ids=["warm-up", "requests", "duration", "preflight"],
)
def test_a_trickling_server_ends_the_run_within_its_bound(
    capsys, fake_openai_server, options: dict, args: list[str], rc_expected: int, phrase: str
) -> None:
    server = fake_openai_server(behaviour="trickle", trickle_interval_s=TRICKLE_INTERVAL_S, **options)
    rc, err, elapsed_s, bound_s = _bounded_cli(capsys, server, "--timeout", "1", "--concurrency", "2", *args)
    assert rc == rc_expected, err
    assert phrase in assert_one_line_error(err)
    assert elapsed_s < bound_s + BOUND_SLACK_S, f"{elapsed_s:.1f} s, bound {bound_s:g} s"


def test_a_trickled_stream_is_a_timeout_record_at_the_total_deadline(fake_openai_server) -> None:
    server = fake_openai_server(behaviour="trickle", trickle_interval_s=0.1, trickle_only_streams=True)
    report = run_bench(_config(server, timeout_s=1.0, warmup_requests=0, concurrencies=[2], requests_per_level=2))
    assert report.levels[0].metrics.errors_by_kind == {"timeout": 2}
    assert "total deadline" in report.levels[0].records[0].error


@pytest.mark.parametrize(
    "args",
    [
        ["--duration", "inf"],
        ["--duration", "nan"],
        ["--request-rate", "1e-300"],
        ["--timeout", "inf"],
        ["--timeout", "1e308"],
        ["--timeout", "nan"],
        ["--max-error-rate", "nan"],
        ["--temperature", "nan"],
        ["--slo", "p95_ttft_ms=nan"],
        ["--url", "http://[::1"],
        ["--url", "ftp://127.0.0.1/x"],
    ],
)
def test_values_that_mean_forever_or_nothing_are_usage_errors(capsys, fake_openai_server, args: list[str]) -> None:
    server = fake_openai_server()
    rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, *SHORT, *args)
    assert rc == 4, err
    assert "Traceback" not in err
    assert server.request_count == 0


def test_credentials_in_the_url_are_refused_and_never_shown(capsys, fake_openai_server) -> None:
    server = fake_openai_server()
    password = "pw-never-shown-4711"
    url = server.url.replace("http://", f"http://user:{password}@")
    rc, out, err = run_cli(capsys, "--url", url, "--api-key", server.api_key, *SHORT)
    assert rc == 4
    line = assert_one_line_error(err)
    assert "credentials in the URL" in line and "--api-key" in err
    assert password not in out + err and server.api_key not in out + err
    with pytest.raises(UsageError) as info:
        run_bench(_config(server, base_url=url))
    assert password not in str(info.value) and password not in (info.value.fix or "")
    assert server.request_count == 0


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--chart", "--out"])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_load(
    capsys, fake_openai_server, tmp_path: Path, flag: str
) -> None:
    server = fake_openai_server()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    targets = [a_file / "x"] if flag == "--out" else [tmp_path, a_file / "x.json"]
    for target in targets:
        rc, _, err = run_cli(capsys, "--url", server.url, "--api-key", server.api_key, *SHORT, flag, str(target))
        assert rc == 4, err
        assert "Traceback" not in err
    assert server.request_count == 0


def test_a_stream_over_its_max_tokens_worth_is_a_protocol_record(fake_openai_server) -> None:
    from r4b_deploy.client.wire import stream_max_bytes

    server = fake_openai_server(big_body_bytes=stream_max_bytes(8))
    report = run_bench(_config(server, max_tokens=8, warmup_requests=0, concurrencies=[2], requests_per_level=2))
    m = report.levels[0].metrics
    assert m.failed == 2 and set(m.errors_by_kind) <= {"protocol", "stream"}


@pytest.mark.parametrize("mode", ["auto", "short"])
def test_counts_follow_the_text_when_usage_disagrees(fake_openai_server, mode: str) -> None:
    """The tiny vLLM streamed every token in `reasoning` and no content, cut by max_tokens, while
    usage said only some were reasoning: the bench reported answer tokens for replies it had
    itself flagged as cut off with no answer (and in short mode 0 reasoning tokens)."""
    server = fake_openai_server(
        reasoning_field="reasoning", answer="", auto_thinks=True, reasoning_chunks=8, usage_reasoning_count=3
    )
    server.config.honour_modes = mode == "auto"  # a parser that files short mode's text as reasoning too
    report = run_bench(_config(server, mode=mode, max_tokens=6, concurrencies=[1], requests_per_level=3))
    m = report.levels[0].metrics
    mm = m.modes[mode]
    assert mm.completed == 3 and mm.truncated_reasoning == 3
    assert mm.answer_tokens == 0 and mm.reasoning_tokens == 18
    assert m.cut_off_thinking_rate == 1.0 and m.split_adjusted == 3
    assert m.reasoning_paths == {"reasoning": 3} and m.token_split_sources == {"text": 3}
    assert any("disagreed with the text" in w for w in report.warnings)


def test_modes_are_swept_like_load_levels(fake_openai_server) -> None:
    server = fake_openai_server(chunk_delay_s=0.001)
    report = run_bench(_config(server, mode="auto,long,short", concurrencies=[1, 2], requests_per_level=4))
    assert [(lv.mode, lv.label) for lv in report.levels] == [
        (mode, f"{mode}, concurrency {c}") for mode in ("auto", "long", "short") for c in (1, 2)
    ]
    assert report.mode == "auto,long,short"
    for lv in report.levels:
        assert list(lv.metrics.modes) == [lv.mode]  # a level runs its mode only
        assert {r.mode for r in lv.records} == {lv.mode}
        flat = lv.metrics.flat()
        assert flat["p95_time_to_first_answer_ms"] is not None and flat["p99_ttft_ms"] is not None
        assert flat["cut_off_thinking_rate"] == 0.0
        thinks = lv.mode != "short"
        assert lv.metrics.reasoning_paths == ({"think_tags": 4} if thinks else {})
        # With a think block, the first answer comes after the first token; without, they coincide.
        first_answer, ttft = flat["median_time_to_first_answer_ms"], flat["median_ttft_ms"]
        assert (first_answer > ttft) if thinks else (first_answer >= ttft)


def test_a_per_mode_gate_judges_that_mode_only(capsys, fake_openai_server) -> None:
    server = fake_openai_server()
    common = ["--url", server.url, "--api-key", server.api_key, "--warmup", "0", *SHORT]
    rc, out, err = run_cli(capsys, *common, "--mode", "auto,short", "--slo", "short:max_cut_off_thinking_rate=0")
    assert rc == 0, err
    assert "short: cut_off_thinking_rate <= 0" in out
    rc, out, err = run_cli(capsys, *common, "--mode", "mix", "--slo", "long:p95_time_to_first_answer_ms<=0.0001")
    assert rc == 1
    line = assert_one_line_error(err)
    assert "long:p95_time_to_first_answer_ms" in line and "at concurrency 2" in line


def test_a_gate_whose_interval_straddles_its_limit_is_inconclusive_exit_6(capsys, fake_openai_server, tmp_path) -> None:
    """`--mode mix` replies think or not in turn, and 6 tokens cut the thinking ones off: the cut-off
    share of a level moves with which requests a resample draws, so a limit at the figure itself
    can be neither held nor broken."""
    server = fake_openai_server()
    common = ["--url", server.url, "--api-key", server.api_key, "--warmup", "0", "--mode", "mix", *SHORT]
    common += ["--max-tokens", "6"]
    out_json = tmp_path / "bench.json"
    rc, _, err = run_cli(capsys, *common, "--slo", "max_cut_off_thinking_rate=1", "--json", str(out_json))
    assert rc == 0, err
    (held,) = [g for g in json.loads(out_json.read_text())["slo"] if g["metric"] == "cut_off_thinking_rate"]
    assert held["verdict"] == "pass" and held["confidence"] == 0.95 and 0 < held["ci_low"] < held["ci_high"]
    # The fake server cuts off the same share every run: a limit just above it, inside the interval.
    limit = held["value"] + 0.05
    rc, _, err = run_cli(
        capsys, *common, "--repeat", "2", "--slo", f"max_cut_off_thinking_rate={limit!r}", "--json", str(out_json)
    )
    assert rc == 6, err
    line = assert_one_line_error(err)
    assert "inconclusive" in line and "cut_off_thinking_rate" in line and "--repeat" in line
    result = json.loads(out_json.read_text())
    (gate,) = [g for g in result["slo"] if g["metric"] == "cut_off_thinking_rate"]
    assert gate["verdict"] == "inconclusive" and gate["runs"] == 2 and gate["ci_low"] <= limit < gate["ci_high"]
    assert result["repeat"] == 2
    rc, _, err = run_cli(capsys, *common, "--slo", f"max_cut_off_thinking_rate={limit!r}", "--slo", "p95_ttft_ms<=0")
    assert rc == 1, err  # a gate broken beyond noise outranks an inconclusive one


def test_a_baseline_gates_each_level_and_another_workload_is_refused(capsys, fake_openai_server, tmp_path) -> None:
    server = fake_openai_server()
    common = ["--url", server.url, "--api-key", server.api_key, "--warmup", "0", *SHORT]
    base, now = tmp_path / "base.json", tmp_path / "now.json"
    rc, _, err = run_cli(capsys, *common, "--json", str(base))
    assert rc == 0, err
    rc, out, err = run_cli(capsys, *common, "--max-tokens", "16", "--baseline", str(base))
    assert rc == 4 and out == ""  # refused before any load: nothing measured, nothing printed
    assert "ran another workload: max_tokens 32 there, 16 here" in assert_one_line_error(err)
    # Timings on a shared machine move too much to assert a verdict: the gates and their references.
    rc, _, err = run_cli(
        capsys, *common, "--baseline", str(base), "--regression-tolerance", "p95_ttft_ms=50%", "--json", str(now)
    )
    assert rc in (0, 1, 6), err
    (level,) = json.loads(base.read_text())["levels"]
    gates = {g["metric"]: g for g in json.loads(now.read_text())["slo"] if g["baseline"] is not None}
    assert gates["p95_ttft_ms"]["baseline"] == level["p95_ttft_ms"]
    assert gates["p95_ttft_ms"]["threshold"] == pytest.approx(1.5 * level["p95_ttft_ms"])
    assert gates["output_throughput"]["op"] == ">=" and gates["output_throughput"]["ci_low"] is not None
