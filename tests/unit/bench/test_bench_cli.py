"""`r4b-deploy bench` option handling: bad input is exit 4 in one line, before any request."""

from __future__ import annotations

import pytest
from support import bench_report

from r4b_deploy.cli.main import main

URL = ["--url", "http://127.0.0.1:9"]  # never contacted: every case fails while parsing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*URL, "--concurrency", "0"], "'0' must be > 0"),
        ([*URL, "--concurrency", "1,x"], "'x' is not a number"),
        ([*URL, "--request-rate", "-2"], "'-2' must be > 0"),
        ([*URL, "--requests", "4", "--duration", "5"], "--requests and --duration exclude each other"),
        ([*URL, "--slo", "p95_ttft_ms"], "expected NAME=VALUE"),
        ([*URL, "--slo", "nonsense=1"], "unknown metric 'nonsense'"),
        ([*URL, "--mode", "deep"], "Invalid value for '--mode'"),
        (["--concurrency", "1"], "no endpoint given"),
        ([*URL, "--env-file", "a.env", "--deployment", "d"], "exclude each other"),
    ],
)
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    rc = main(["bench", *args])
    err = capsys.readouterr().err
    assert rc == 4
    assert message in err
    assert "Traceback" not in err


def test_env_file_without_a_key(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "r4b.env"
    env.write_text("HF_TOKEN=x\n")
    rc = main(["bench", *URL, "--env-file", str(env)])
    assert rc == 4
    assert "has no VLLM_API_KEY" in capsys.readouterr().err


def test_help_lists_the_gates_and_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--slo", "--max-error-rate", "--json", "--markdown", "--chart", "--out", "--deployment"):
        assert option in out


def _wide_report():
    """A three-mode sweep with the widest figures a real run shows: minutes of E2E, thousands of
    tokens/s, a capped infinite rate."""
    import math

    from r4b_deploy.bench.metrics import compute_metrics
    from r4b_deploy.bench.report import LevelResult
    from r4b_deploy.bench.schedule import LoadLevel
    from r4b_deploy.client.records import RequestRecord

    levels = []
    loads = [
        LoadLevel(kind="concurrency", concurrency=256),
        LoadLevel(kind="rate", request_rate=math.inf, max_concurrency=256),
    ]
    for mode in ("auto", "long", "short"):
        for load in loads:
            records = [
                RequestRecord(
                    success=True,
                    mode=mode,
                    latency_s=123.456 + i,
                    ttft_s=12.345,
                    first_answer_token_s=98.765,
                    itl_s=[0.01] * 3,
                    prompt_tokens=64,
                    output_tokens=16384,
                    reasoning_tokens=12000,
                    answer_tokens=4384,
                    thought=True,
                    finish_reason="stop",
                )
                for i in range(10)
            ] + [RequestRecord(success=False, error_kind="timeout", error="t", mode=mode)] * 1234
            levels.append(
                LevelResult(
                    load=load,
                    label=f"{mode}, {load.label}",
                    mode=mode,
                    metrics=compute_metrics(records, duration_s=13.27),
                    client_cpu_s=0.0,
                    client_cpu_fraction=0.0,
                )
            )
    return bench_report(levels, mode="auto,long,short", max_tokens=16384, timeout_s=600.0)


def test_the_summary_tables_fit_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns the tables' headers and numbers were cut off ("…"); every figure must show whole."""
    import io

    from rich.console import Console

    import r4b_deploy.cli.output as output
    from r4b_deploy.cli.bench_summary import print_summary

    buf = io.StringIO()
    monkeypatch.setattr(output, "console", lambda stderr=False: Console(file=buf, width=80, force_terminal=True))
    print_summary(_wide_report(), stderr=False)
    text = buf.getvalue()
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "…" not in plain, plain
    assert max(len(line) for line in plain.splitlines()) <= 80, plain
    for figure in ("132,006", "12,345", "98,765", "0.75", "12,346.6", "inf/s≤256", "c=256", "1234"):
        assert figure in plain, (figure, plain)
    for header in ("TTFT", "TPOT", "E2E", "cut off", "1st ans", "thinking"):
        assert header in plain


def test_a_gate_on_a_mode_the_sweep_does_not_run_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", *URL, "--mode", "auto,long", "--slo", "short:p95_ttft_ms=300"])
    assert rc == 4
    assert "runs no short requests" in capsys.readouterr().err
