"""Result JSON (vLLM's key names), Markdown, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

from support import file_mode, umask

from r4b_deploy.bench.writers import (
    CHART_NAME,
    JSON_NAME,
    MARKDOWN_NAME,
    render_json,
    render_markdown,
    result_json,
    write_outputs,
)

# The keys of a `vllm bench serve` result file whose meaning ours shares (peers.md).
VLLM_KEYS = [
    "date",
    "backend",
    "model_id",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
] + [
    f"{s}_{m}_ms"
    for m in ("ttft", "tpot", "itl", "e2el")
    for s in ("mean", "median", "std", "p50", "p90", "p95", "p99")
]


def test_each_level_carries_vllms_keys(make_report) -> None:
    doc = json.loads(render_json(make_report()))
    assert len(doc["levels"]) == 2
    for level in doc["levels"]:
        missing = [k for k in VLLM_KEYS if k not in level]
        assert not missing
    first = doc["levels"][0]
    assert first["backend"] == "openai-chat"
    assert first["request_rate"] == "inf"  # a closed-loop level, as vLLM writes --max-concurrency runs
    assert first["max_concurrency"] == 1
    assert first["completed"] == 8 and first["num_prompts"] == 8
    assert first["mean_ttft_ms"] == 50.0
    # TPOT = (1.0 - 0.05) / 9 s
    assert abs(first["mean_tpot_ms"] - 950 / 9) < 1e-9


def test_our_additions_sit_beside_vllms(make_report) -> None:
    level = result_json(make_report(failures=2))["levels"][1]
    assert level["errors_by_kind"] == {"http_5xx": 2}
    assert level["modes"]["long"]["mean_reasoning_tokens"] == 6.0
    assert level["modes"]["short"]["mean_answer_tokens"] == 10.0
    assert "p95_time_to_first_answer_ms" in level
    assert level["total_reasoning_tokens"] == 24
    # vLLM's `errors` is a per-request list in detailed mode only; ours by kind is a separate key.
    assert "errors" not in level


def test_detailed_mode_adds_vllms_per_request_lists(make_report) -> None:
    level = result_json(make_report(failures=1), detailed=True)["levels"][0]
    assert len(level["ttfts"]) == len(level["output_lens"]) == len(level["errors"]) == 9
    assert level["errors"][-1] == "HTTP 500: fake"
    assert level["itls"][0] == [0.01] * 9


def test_json_is_strict(make_report) -> None:
    text = render_json(make_report())
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN/Infinity
    assert "sk-" not in text


def test_markdown_has_a_row_per_level_and_mode(make_report) -> None:
    md = render_markdown(make_report(failures=1))
    assert md.startswith("# Benchmark: r4b at http://127.0.0.1:8000")
    assert "| concurrency 1 | 8 | 1 |" in md
    assert "| concurrency 4 | long | 4 | 100% | 6.0 | 4.0 |" in md
    assert "## Errors" in md and "| concurrency 1 | http_5xx | 1 |" in md
    assert "`http_5xx: HTTP 500: fake`" in md
    assert "- an example warning" in md


def test_write_outputs_writes_whole_files(make_report, tmp_path: Path) -> None:
    written = write_outputs(make_report(), tmp_path / "a" / "r.json", tmp_path / "r.md", None)
    assert written == [tmp_path / "a" / "r.json", tmp_path / "r.md"]
    assert json.loads((tmp_path / "a" / "r.json").read_text())["model_id"] == "r4b"
    assert (tmp_path / "r.md").read_text().startswith("# Benchmark")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "r.json", "r.md"]  # no temporary left


def test_every_bench_file_is_readable_by_all_whatever_the_umask(make_report, tmp_path: Path) -> None:
    """Bug 4: one mode for every report file (0644: figures, never a secret)."""
    with umask(0o077):
        write_outputs(make_report(), tmp_path / JSON_NAME, tmp_path / MARKDOWN_NAME, tmp_path / CHART_NAME)
    assert {p.name: file_mode(p) for p in tmp_path.iterdir()} == {
        "bench.json": 0o644,
        "bench.md": 0o644,
        "bench.png": 0o644,
    }
