"""Request bodies: streamed with usage, the mode's template kwargs, images as data URLs."""

from __future__ import annotations

import base64
import json

from r4b_deploy.bench.workload import WorkloadSpec, modes_for, prepare_requests
from r4b_deploy.spec import model_spec


def _bodies(**kw) -> list[dict]:
    return [json.loads(p.body) for p in prepare_requests(WorkloadSpec(model="r4b", **kw), pool_size=6)]


def test_text_body_streams_with_usage_and_the_modes_kwargs() -> None:
    body = _bodies(mode="short", max_tokens=32)[0]
    assert body["model"] == "r4b"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 32
    thinking = model_spec().thinking
    assert body[thinking.request_field] == thinking.template_kwargs("short")
    assert body[thinking.request_field]["thinking_mode"] == "short"
    assert "ignore_eos" not in body and "temperature" not in body


def test_ignore_eos_and_temperature_are_sent_when_asked() -> None:
    body = _bodies(ignore_eos=True, temperature=0.0)[0]
    assert body["ignore_eos"] is True and body["temperature"] == 0.0


def test_mix_alternates_the_modes() -> None:
    prepared = prepare_requests(WorkloadSpec(model="r4b", mode="mix"), pool_size=6)
    assert [p.mode for p in prepared] == ["auto", "long", "short"] * 2
    assert modes_for("long") == ["long"]


def test_prompts_are_distinct_and_reproducible() -> None:
    a = _bodies(seed=3)
    assert len({b["messages"][0]["content"] for b in a}) == len(a)
    assert a == _bodies(seed=3)
    assert a != _bodies(seed=4)
    assert len(a[0]["messages"][0]["content"].split("\n")[0].split()) == 48 + 2  # "Prompt N." + words


def test_image_workload_sends_a_png_data_url() -> None:
    prepared = prepare_requests(WorkloadSpec(model="r4b", kind="image", image_size_px=(64, 32)), pool_size=2)
    assert prepared[0].workload == "image"
    parts = json.loads(prepared[0].body)["messages"][0]["content"]
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 64 and int.from_bytes(png[20:24], "big") == 32
    assert parts[1]["type"] == "text"
    other = json.loads(prepared[1].body)["messages"][0]["content"][0]["image_url"]["url"]
    assert other != url  # distinct images: the server's cache cannot skip the vision encoder
