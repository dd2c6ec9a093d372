"""EndpointClient against a real loopback socket server (tests/fixtures/servers.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from r4b_deploy.client.http import ChatResult, ClientError, EndpointClient
from r4b_deploy.client.images import large_image_url, small_image_url

QUESTION = [{"role": "user", "content": "What is 7 + 5?"}]
LIVENESS_BOUND_S = 30.0  # not a timing: a call still running after this is a hang


def client_for(server: Any, **kwargs: Any) -> EndpointClient:
    options = {"api_key": server.api_key, "timeout_s": 2.0, "served_model_name": server.served_model_name}
    options.update(kwargs)
    return EndpointClient(server.url, **options)


def finishes(call: Callable[[], Any]) -> Any:
    """Run `call` in a thread; fail if it is still running after LIVENESS_BOUND_S (a hang)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIVENESS_BOUND_S)
    assert not thread.is_alive(), "the call hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_health_models_tokenize(fake_openai: Any) -> None:
    with client_for(fake_openai) as client:
        assert client.health() is True
        assert client.models() == ["r4b"]
        short = client.tokenize(messages=QUESTION, mode="short")
        none = client.tokenize(messages=QUESTION)
        assert short == none + 6  # the fake's template adds 6 tokens for short mode
        assert client.tokenize(prompt="one two three") == 3


def test_modes_send_template_kwargs_at_the_top_level(fake_openai: Any) -> None:
    with client_for(fake_openai) as client:
        client.chat(QUESTION, mode="short", max_tokens=8)
        client.chat_stream(QUESTION, mode="long", max_tokens=8)
        client.chat(QUESTION, max_tokens=8)
    bodies = [r.body for r in fake_openai.requests if r.path == "/v1/chat/completions"]
    assert bodies[0]["chat_template_kwargs"] == {"thinking_mode": "short", "enable_thinking": False}
    assert bodies[1]["chat_template_kwargs"] == {"thinking_mode": "long"}
    assert bodies[1]["stream"] is True and bodies[1]["stream_options"] == {"include_usage": True}
    assert "chat_template_kwargs" not in bodies[2]


@pytest.mark.parametrize("reasoning_field", [None, "reasoning", "reasoning_content"])
def test_plain_and_streamed_chat_agree(fake_openai_server: Any, reasoning_field: str | None) -> None:
    server = fake_openai_server(reasoning_field=reasoning_field)
    with client_for(server) as client:
        plain = client.chat(QUESTION, mode="auto", max_tokens=64)
        streamed = client.chat_stream(QUESTION, mode="auto", max_tokens=64)
    assert plain.split == streamed.split
    assert plain.split.answer == "The image is red."
    assert plain.split.reasoning.startswith("step0")
    assert streamed.reasoning_field == plain.reasoning_field == reasoning_field
    assert (plain.prompt_tokens, plain.completion_tokens) == (streamed.prompt_tokens, streamed.completion_tokens)
    assert plain.finish_reason == streamed.finish_reason == "stop"


def test_stream_timings_are_ordered(fake_openai: Any) -> None:
    with client_for(fake_openai) as client:
        r: ChatResult = client.chat_stream(QUESTION, mode="long", max_tokens=64)
    t = r.timings
    assert r.streamed and r.chunks >= 10
    assert t.ttft_s is not None and t.first_answer_token_s is not None
    assert 0 < t.ttft_s <= t.first_answer_token_s <= t.latency_s
    assert len(t.itl_s) == r.chunks - 1 and all(gap >= 0 for gap in t.itl_s)


def test_long_mode_cut_at_the_limit_is_truncated_reasoning(fake_openai: Any) -> None:
    with client_for(fake_openai) as client:
        r = client.chat_stream(QUESTION, mode="long", max_tokens=4)
    assert r.finish_reason == "length"
    assert r.split.truncated_reasoning and r.split.answer == ""
    assert r.timings.first_answer_token_s is None


def test_images_cost_prompt_tokens(fake_openai: Any) -> None:
    def ask(url: str) -> int:
        message = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "hi"}],
            }
        ]
        result = client.chat(message, max_tokens=1)
        assert result.prompt_tokens is not None
        return result.prompt_tokens

    with client_for(fake_openai) as client:
        text_only = client.chat([{"role": "user", "content": "hi"}], max_tokens=1).prompt_tokens
        assert text_only is not None
        assert text_only < ask(small_image_url()) < ask(large_image_url())


@pytest.mark.parametrize(
    ("options", "kind", "text"),
    [
        ({"behaviour": "status", "status_code": 500}, "http_5xx", "500: server error"),
        ({"behaviour": "status", "status_code": 503}, "http_5xx", "503"),
        ({"behaviour": "status", "status_code": 429}, "http_429", "429: rate limited"),
        ({"behaviour": "status", "status_code": 400}, "http_4xx", "400"),
        ({"served_model_name": "other"}, "http_404", "The model `r4b` does not exist"),
    ],
)
def test_http_errors_have_kinds(fake_openai_server: Any, options: dict, kind: str, text: str) -> None:
    server = fake_openai_server(**options)
    with client_for(server, served_model_name="r4b") as client:
        for call in (client.chat, client.chat_stream):
            with pytest.raises(ClientError) as info:
                call(QUESTION, max_tokens=8)
            assert info.value.kind == kind
            assert text in info.value.message
            assert "\n" not in info.value.message


def test_429_after_k_requests(fake_openai_server: Any) -> None:
    server = fake_openai_server(behaviour="status", status_code=429, fail_after=2)
    with client_for(server) as client:
        client.chat(QUESTION, max_tokens=4)
        client.chat_stream(QUESTION, max_tokens=4)
        with pytest.raises(ClientError) as info:
            client.chat(QUESTION, max_tokens=4)
    assert info.value.kind == "http_429" and info.value.status_code == 429


def test_wrong_and_missing_api_key(fake_openai: Any) -> None:
    with client_for(fake_openai, api_key="not-the-key") as client:
        assert client.health()  # /health needs no key, as in vLLM
        with pytest.raises(ClientError) as info:
            client.models()
    assert info.value.kind == "http_401" and info.value.message == "401: wrong API key"
    with client_for(fake_openai, api_key=None) as client, pytest.raises(ClientError) as info:
        client.chat(QUESTION, max_tokens=4)
    assert info.value.kind == "http_401" and "none was given" in info.value.message


@pytest.mark.parametrize(
    ("behaviour", "plain_kind", "stream_kind"),
    [
        ("hang", "timeout", "timeout"),
        ("hang_mid_stream", "timeout", "timeout"),
        ("malformed_sse", "protocol", "stream"),
        ("drop_mid_stream", "stream", "stream"),
    ],
)
def test_broken_servers_raise_client_errors_without_hanging(
    fake_openai_server: Any, behaviour: str, plain_kind: str, stream_kind: str
) -> None:
    server = fake_openai_server(behaviour=behaviour)
    with client_for(server, timeout_s=1.0) as client:
        for call, kind in ((client.chat, plain_kind), (client.chat_stream, stream_kind)):
            with pytest.raises(ClientError) as info:
                finishes(lambda call=call: call(QUESTION, max_tokens=8))
            assert info.value.kind == kind, info.value.message


def test_stream_stalled_mid_way_says_so(fake_openai_server: Any) -> None:
    server = fake_openai_server(behaviour="hang_mid_stream", chunks_before_fault=4)
    with client_for(server, timeout_s=1.0) as client, pytest.raises(ClientError) as info:
        finishes(lambda: client.chat_stream(QUESTION, max_tokens=32))
    assert "stalled" in info.value.message


def test_nothing_listening_is_a_connection_error(free_port_url: str) -> None:
    client = EndpointClient(free_port_url, timeout_s=1.0)
    for call in (client.health, client.models, lambda: client.chat(QUESTION, max_tokens=1)):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.kind == "connection"
        assert "nothing answers" in info.value.message


def test_the_key_never_shows(fake_openai: Any) -> None:
    client = client_for(fake_openai)
    assert fake_openai.api_key not in repr(client)
    with client_for(fake_openai, api_key="wrong-secret-123") as bad, pytest.raises(ClientError) as info:
        bad.models()
    assert "wrong-secret-123" not in str(info.value)


# -- issue 11: a total deadline per request, and bounded reads ------------------------------

TRICKLE_INTERVAL_S = 0.2  # a byte well within each read's timeout: only a total deadline ends it
DEADLINE_TIMEOUT_S = 1.0
DEADLINE_SLACK_S = 1.5  # the watchdog fires at the deadline; this covers a busy 2-core machine


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.health_status(),
        lambda c: c.models(),
        lambda c: c.chat(QUESTION, max_tokens=8),
        lambda c: c.chat_stream(QUESTION, max_tokens=8),
    ],
    ids=["health", "models", "chat", "chat_stream"],
)
def test_a_trickling_server_is_cut_at_the_total_deadline(fake_openai_server: Any, call: Callable) -> None:
    server = fake_openai_server(behaviour="trickle", trickle_interval_s=TRICKLE_INTERVAL_S, fault_health=True)
    client = client_for(server, timeout_s=DEADLINE_TIMEOUT_S)
    t0 = time.monotonic()
    with pytest.raises(ClientError) as info:
        finishes(lambda: call(client))
    assert time.monotonic() - t0 < DEADLINE_TIMEOUT_S + DEADLINE_SLACK_S
    assert info.value.kind == "timeout"
    assert f"within {DEADLINE_TIMEOUT_S:g} s" in info.value.message


def test_the_deadline_also_cuts_a_kept_alive_connection(fake_openai_server: Any) -> None:
    server = fake_openai_server()
    client = client_for(server, timeout_s=DEADLINE_TIMEOUT_S)
    assert client.models() == [server.served_model_name]  # opens the connection the next call reuses
    server.config.behaviour = "trickle"
    server.config.trickle_interval_s = TRICKLE_INTERVAL_S
    t0 = time.monotonic()
    with pytest.raises(ClientError, match="within"):
        finishes(client.models)
    assert time.monotonic() - t0 < DEADLINE_TIMEOUT_S + DEADLINE_SLACK_S


def test_a_body_over_the_cap_is_refused_not_read(fake_openai_server: Any) -> None:
    from r4b_deploy.client.wire import BODY_MAX_BYTES

    server = fake_openai_server(big_body_bytes=BODY_MAX_BYTES + 1)
    client = client_for(server)
    for call in (client.models, lambda: client.chat(QUESTION, max_tokens=8)):
        with pytest.raises(ClientError) as info:
            finishes(call)
        assert info.value.kind == "protocol" and "over 8 MiB" in info.value.message
    assert client.health()  # /health's body is never read: its status is the answer


def test_a_big_error_body_still_gives_the_status(fake_openai_server: Any) -> None:
    from r4b_deploy.client.wire import BODY_MAX_BYTES

    server = fake_openai_server(behaviour="status", status_code=503, big_body_bytes=BODY_MAX_BYTES * 2)
    with pytest.raises(ClientError) as info:
        finishes(lambda: client_for(server).models())
    assert info.value.kind == "http_5xx" and info.value.status_code == 503


def test_a_stream_over_its_max_tokens_worth_is_refused(fake_openai_server: Any) -> None:
    from r4b_deploy.client.wire import stream_max_bytes

    max_tokens = 8
    server = fake_openai_server(big_body_bytes=stream_max_bytes(max_tokens))  # one comment line that big
    with pytest.raises(ClientError) as info:
        finishes(lambda: client_for(server).chat_stream(QUESTION, max_tokens=max_tokens))
    assert info.value.kind in ("protocol", "stream")
    assert "ran past" in info.value.message or "line over" in info.value.message
