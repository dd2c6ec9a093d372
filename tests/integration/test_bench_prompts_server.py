"""bench's prompts against a real socket server (tests/fixtures/servers.py, which counts prompt
tokens as words + template overhead): --input-len sized by /tokenize and reported as the server
counted, --prompts easy,hard swept as an axis, --dataset replayed as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r4b_deploy.bench.workload import CALIBRATION_CALLS
from r4b_deploy.cli.main import main
from r4b_deploy.client.images import solid_png

pytestmark = pytest.mark.integration

SHORT = ["--concurrency", "2", "--requests", "4", "--max-tokens", "16", "--no-progress", "--warmup", "1"]


def _bench(capsys, server, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    rc = main(["bench", "--url", server.url, "--api-key", server.api_key, *SHORT, "--json", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 0, err
    return json.loads(out.read_text())


def _levels(result: dict) -> list[dict]:
    return result["levels"]


def test_input_len_is_met_as_the_server_counts_with_a_few_tokenize_calls(capsys, fake_openai_server, tmp_path) -> None:
    server = fake_openai_server()
    result = _bench(capsys, server, tmp_path, "--input-len", "40", "--mode", "auto,short")
    levels = _levels(result)
    assert [lv["mean_input_tokens"] for lv in levels] == [40, 40]  # short's template costs more: sized per mode
    assert [lv["median_input_tokens"] for lv in levels] == [40, 40]
    assert all(lv["modes"][lv["thinking_mode"]]["mean_input_tokens"] == 40 for lv in levels)
    sizing = [r for r in server.requests if r.path == "/tokenize" and r.body and "messages" in r.body]
    assert 0 < len(sizing) <= CALIBRATION_CALLS * 2  # a few per mode, before the load, none during it
    first_chat = next(i for i, r in enumerate(server.requests) if r.path == "/v1/chat/completions")
    assert all(server.requests.index(r) < first_chat for r in sizing)


def test_prompt_sets_are_swept_and_say_what_they_prove(capsys, fake_openai_server, tmp_path) -> None:
    server = fake_openai_server()
    result = _bench(capsys, server, tmp_path, "--prompts", "easy,hard", "--workload", "image")
    labels = [lv["label"] for lv in _levels(result)]
    assert labels == ["easy, concurrency 2", "hard, concurrency 2"]
    assert [lv["prompt_set"] for lv in _levels(result)] == ["easy", "hard"]
    hard_input = [lv["mean_input_tokens"] for lv in _levels(result)]
    assert hard_input[1] > hard_input[0]  # the hard question is longer (same image size)
    assert any("only mean something on the real model" in w for w in result["warnings"])
    chats = [r.body for r in server.requests if r.path == "/v1/chat/completions" and r.body]
    texts = {c["messages"][0]["content"][-1]["text"].split(":")[0].split()[0] for c in chats}
    assert texts == {"Picture", "Chart"}


def test_a_dataset_is_replayed_as_written(capsys, fake_openai_server, tmp_path) -> None:
    server = fake_openai_server()
    (tmp_path / "red.png").write_bytes(solid_png(64, 64, (220, 20, 20)))
    dataset = tmp_path / "mine.jsonl"
    image_part = {"type": "image_url", "image_url": {"url": "red.png"}}
    dataset.write_text(
        json.dumps([{"role": "user", "content": "first question here"}])
        + "\n"
        + json.dumps(
            {
                "messages": [{"role": "user", "content": [image_part, {"type": "text", "text": "what?"}]}],
                "max_tokens": 3,
            }
        )
        + "\n"
    )
    result = _bench(capsys, server, tmp_path, "--dataset", str(dataset), "--warmup", "0")
    chats = [r.body for r in server.requests if r.path == "/v1/chat/completions" and r.body]
    assert len(chats) == 4
    text_bodies = [c for c in chats if isinstance(c["messages"][0]["content"], str)]
    image_bodies = [c for c in chats if not isinstance(c["messages"][0]["content"], str)]
    assert [c["messages"][0]["content"] for c in text_bodies] == ["first question here"] * 2  # two in flight
    assert len(image_bodies) == 2
    assert all(c["max_tokens"] == 3 for c in image_bodies) and all(c["max_tokens"] == 16 for c in text_bodies)
    assert image_bodies[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert _levels(result)[0]["workload"] == "dataset mine.jsonl (2 requests)"
