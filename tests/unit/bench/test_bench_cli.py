"""`r4b-deploy bench` option handling: bad input is exit 4 in one line, before any request."""

from __future__ import annotations

import pytest

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
