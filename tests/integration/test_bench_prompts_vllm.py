"""bench's prompts against the real vLLM (CPU build, tiny R-4B-architecture model): --input-len
sized by vLLM's own /tokenize (chat template and thinking-mode kwargs included) lands near the
asked size as vLLM counts it, and the prompt sets and their images go through vLLM's processor.
Random weights: this proves the plumbing, not that hard prompts make R-4B think more."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from r4b_deploy.bench.runner import BenchConfig, run_bench

pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.slow]

INPUT_LEN = 64  # `vllm bench serve`'s usual random input; the tiny tokenizer spends 1-8 tokens a word
TOLERANCE = 0.1  # of INPUT_LEN: within about a word of the tiny tokenizer (4.4 tokens on average)


def _config(server, **kw) -> BenchConfig:
    return BenchConfig(
        base_url=server.url,
        api_key=SecretStr(server.api_key) if server.api_key else None,
        model=server.served_model_name,
        max_tokens=4,
        concurrencies=[4],
        warmup_requests=1,
        timeout_s=120.0,
        **kw,
    )


def test_input_len_is_met_as_vllm_counts_it_in_each_mode(vllm_server) -> None:
    report = run_bench(_config(vllm_server, input_len=INPUT_LEN, mode="auto,short", requests_per_level=64))
    for level in report.levels:
        m = level.metrics
        assert m.failed == 0, m.error_samples
        assert m.mean_input_tokens is not None
        assert abs(m.mean_input_tokens - INPUT_LEN) <= TOLERANCE * INPUT_LEN, (level.label, m.mean_input_tokens)
    assert report.workload == f"text, {INPUT_LEN} tokens in"


def test_prompt_sets_with_images_reach_vllm(vllm_server) -> None:
    report = run_bench(
        _config(
            vllm_server, prompt_sets=["easy", "hard"], workload="image", requests_per_level=4, image_size_px=(128, 128)
        )
    )
    assert [(lv.prompt_set, lv.label) for lv in report.levels] == [
        ("easy", "easy, concurrency 4"),
        ("hard", "hard, concurrency 4"),
    ]
    easy, hard = (lv.metrics for lv in report.levels)
    assert easy.failed == hard.failed == 0, (easy.error_samples, hard.error_samples)
    assert hard.mean_input_tokens > easy.mean_input_tokens  # same image size, a longer question
    assert any("prove the plumbing" in w for w in report.warnings)
