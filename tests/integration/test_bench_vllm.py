"""A short benchmark against the real vLLM (CPU build, tiny R-4B-architecture model).

Random weights give gibberish: these tests check the pipeline (streaming, usage counts,
thinking modes, images, outputs, the deployment folder), not the answers. Kept short.
"""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from r4b_deploy.bench.runner import BenchConfig, run_bench
from r4b_deploy.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.slow]

MAX_TOKENS = 16
REQUESTS = 8


def _config(server, **kw) -> BenchConfig:
    base = {
        "base_url": server.url,
        "api_key": SecretStr(server.api_key) if server.api_key else None,
        "model": server.served_model_name,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "requests_per_level": REQUESTS,
        "warmup_requests": 2,
        "timeout_s": 120.0,
    }
    base.update(kw)
    return BenchConfig(**base)


def test_short_sweep_counts_tokens_from_the_server(vllm_server) -> None:
    report = run_bench(_config(vllm_server, concurrencies=[1, 4], mode="short"))
    assert [lv.label for lv in report.levels] == ["concurrency 1", "concurrency 4"]
    for level in report.levels:
        m = level.metrics
        assert (m.completed, m.failed) == (REQUESTS, 0), m.error_samples
        # ignore_eos: exactly max_tokens per reply, as the server's usage says.
        assert m.total_output_tokens == REQUESTS * MAX_TOKENS
        assert m.total_input_tokens > 0
        assert m.ttft.count == REQUESTS and m.ttft.mean > 0
        assert m.tpot.count == REQUESTS and m.tpot.mean > 0
        assert m.itl.count > 0
        assert m.output_throughput > 0
        assert m.e2el.mean >= m.ttft.mean
        # Short mode's prompt closed the think block: a reply that wrote no think block of its own
        # is all answer, whatever usage says; the random model sometimes writes `<think>`, and those
        # tokens are reasoning (it used to be flagged "truncated reasoning" with 0 reasoning tokens).
        short = m.modes["short"]
        assert short.reasoning_tokens + short.answer_tokens == short.output_tokens
        for r in level.records:
            if r.thought:
                assert r.reasoning_path == "think_tags" and r.reasoning_tokens > 0
            else:
                assert (r.reasoning_tokens, r.answer_tokens) == (0, MAX_TOKENS), r
            if r.truncated_reasoning:
                assert r.reasoning_tokens > 0 and r.answer_tokens == 0
        assert m.peak_concurrency <= level.load.concurrency


def test_each_thinking_mode_is_split_apart(vllm_server) -> None:
    report = run_bench(_config(vllm_server, concurrencies=[3], mode="mix", requests_per_level=6))
    m = report.levels[0].metrics
    assert m.failed == 0, m.error_samples
    assert set(m.modes) == {"auto", "long", "short"}
    for mm in m.modes.values():
        assert mm.completed == 2
        assert mm.output_tokens == 2 * MAX_TOKENS
        # Every reply's tokens are accounted for: reasoning + answer = completion (or unknown).
        if mm.split_unknown == 0:
            assert mm.reasoning_tokens + mm.answer_tokens == mm.output_tokens
    # long: the template opened the think block; a random model seldom closes it in 16 tokens,
    # so the reply is reasoning (cut by max_tokens), never counted as answer.
    long = m.modes["long"]
    assert long.thought_fraction == 1
    assert long.mean_reasoning_tokens > 0


def test_image_workload(vllm_server) -> None:
    report = run_bench(
        _config(
            vllm_server, concurrencies=[2], mode="short", requests_per_level=2, workload="image", image_size_px=(64, 64)
        )
    )
    m = report.levels[0].metrics
    assert m.failed == 0, m.error_samples
    assert m.total_output_tokens == 2 * MAX_TOKENS
    assert m.total_input_tokens > 0


def test_cli_with_the_deployment_folder(vllm_server, tmp_path, capsys) -> None:
    if vllm_server.log_path is None:
        pytest.skip("an external server has no deployment folder")
    folder = vllm_server.log_path.parent
    out = tmp_path / "out"
    rc = main(
        [
            "bench",
            "--deployment",
            str(folder),
            "--concurrency",
            "2,1000",
            "--requests",
            "4",
            "--max-tokens",
            str(MAX_TOKENS),
            "--ignore-eos",
            "--mode",
            "short",
            "--slo",
            "tpot_p95_ms=100000",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    doc = json.loads((out / "bench.json").read_text())
    from r4b_deploy.deployment import load_deployment

    cap = load_deployment(folder).plan.vllm.max_num_seqs
    # The key came from the env file; 1000 was capped to the plan's max_num_seqs.
    assert [lv["max_concurrency"] for lv in doc["levels"]] == [2, cap]
    assert doc["levels"][0]["completed"] == 4
    assert vllm_server.api_key not in stdout + stderr + (out / "bench.json").read_text()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
