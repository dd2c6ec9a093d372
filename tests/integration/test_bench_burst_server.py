"""A server that sends each whole stream in one write (a buffering proxy, a starved server): the
run flags its own figures as untrustworthy, in the result, the terminal, the JSON and the page.
The same server streaming token by token is not flagged (tests/fixtures/servers.py, "burst")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from r4b_deploy.bench.runner import BenchConfig, run_bench
from r4b_deploy.cli.main import main

pytestmark = pytest.mark.integration

DECODE_STEP_S = 0.005  # the fake's pause between tokens: a decode step, far above metrics.BURST_GAP_S
BURST = "arrived in one burst"


def _config(server, **kw) -> BenchConfig:
    base = {"base_url": server.url, "api_key": SecretStr(server.api_key), "max_tokens": 64, "timeout_s": 10.0}
    return BenchConfig(**{**base, "warmup_requests": 1, "concurrencies": [2], "requests_per_level": 6, **kw})


@pytest.mark.parametrize(("behaviour", "flagged"), [("burst", True), ("ok", False)])
def test_streams_in_one_write_are_flagged_and_real_streams_are_not(
    fake_openai_server, behaviour: str, flagged: bool
) -> None:
    server = fake_openai_server(behaviour=behaviour, chunk_delay_s=DECODE_STEP_S)
    report = run_bench(_config(server, mode="auto,short"))
    for level in report.levels:
        m = level.metrics
        assert m.completed == 6
        assert m.burst_rate == (1.0 if flagged else 0.0), level.label
        # What made the figures untrustworthy: the TTFT of a burst is the whole reply's time.
        if flagged:
            assert m.ttft.median >= 0.9 * m.e2el.median and m.tpot.median < DECODE_STEP_S * 1000 / 2
    lines = [w for w in report.warnings if BURST in w]
    if flagged:
        assert [w.split(":")[0] for w in lines] == ["auto, concurrency 2", "short, concurrency 2"]
        assert all("6 of 6 replies (100%)" in w for w in lines)
    else:
        assert lines == []


def test_the_cli_says_it_and_writes_it_to_the_json_and_the_page(
    capsys: pytest.CaptureFixture[str], fake_openai_server, tmp_path: Path
) -> None:
    server = fake_openai_server(behaviour="burst", chunk_delay_s=DECODE_STEP_S)
    out_json, page = tmp_path / "bench.json", tmp_path / "report.html"
    rc = main(
        ["bench", "--url", server.url, "--api-key", server.api_key, "--concurrency", "2", "--requests", "4",
         "--max-tokens", "32", "--warmup", "1", "--no-progress", "--json", str(out_json), "--html", str(page)]
    )  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())  # the terminal wraps long lines
    assert rc == 0
    assert f"warning: concurrency 2: 4 of 4 replies (100%) {BURST}" in out
    result = json.loads(out_json.read_text())
    assert any(BURST in w for w in result["warnings"]) and result["levels"][0]["burst_rate"] == 1.0
    assert BURST in page.read_text()
