"""The one stream accumulator: exact timings from given arrival times, and both transports agreeing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from r4b_deploy.client.aio import open_session, stream_chat_outcome
from r4b_deploy.client.http import EndpointClient
from r4b_deploy.client.reasoning import ReasoningSplit
from r4b_deploy.client.sse import SSEEvent
from r4b_deploy.client.stream import INCOMPLETE_STREAM, StreamAccumulator, token_split

T0 = 100.0  # the request's start on the caller's clock
QUESTION = [{"role": "user", "content": "What is 7 + 5?"}]


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> SSEEvent:
    choices = [] if delta is None and finish is None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return SSEEvent(json.dumps({"model": "r4b", "choices": choices, **extra}))


DONE = SSEEvent("[DONE]")


def test_timings_come_from_the_arrival_times_given() -> None:
    acc = StreamAccumulator(T0, "auto")
    acc.feed([chunk({"role": "assistant", "content": ""})], T0 + 0.01)  # no text: not a chunk
    acc.feed([chunk({"content": "<think>"})], T0 + 0.1)  # a tag alone is text: vLLM's TTFT counts it
    acc.feed([chunk({"content": "step0 "}), chunk({"content": "step1 "})], T0 + 0.3)  # one read, one time
    acc.feed([chunk({"content": "</think>"}), chunk({"content": "\n\n"})], T0 + 0.4)
    acc.feed([chunk({"content": "Twelve."})], T0 + 0.6)
    acc.feed([chunk({}, finish="stop"), chunk(usage={"prompt_tokens": 9, "completion_tokens": 6}), DONE], T0 + 0.7)
    assert acc.failure() == ""
    reply = acc.reply(end_t=T0 + 0.8)
    assert reply.ttft_s == pytest.approx(0.1)
    assert reply.itl_s == pytest.approx([0.2, 0.0, 0.1, 0.0, 0.2])  # per text chunk, as vLLM's ITL
    assert reply.chunks == 6 == len(reply.itl_s) + 1
    assert reply.first_answer_token_s == pytest.approx(0.6)  # "\n\n" is not an answer token
    assert reply.latency_s == pytest.approx(0.6)  # the last text chunk, not the usage chunk or [DONE]
    assert (reply.split.reasoning, reply.split.answer, reply.split.thought) == ("step0 step1", "Twelve.", True)
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason, reply.model) == (9, 6, "stop", "r4b")
    assert (reply.reasoning_tokens, reply.answer_tokens) == (None, None)  # both, unsplit: left to /tokenize


def test_usage_reasoning_tokens_split_the_count() -> None:
    acc = StreamAccumulator(T0, "long")
    acc.feed([chunk({"reasoning": "hmm"}), chunk({"content": "12"})], T0 + 0.2)
    usage = {"prompt_tokens": 5, "completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 7}}
    acc.feed([chunk({}, finish="stop"), chunk(usage=usage), DONE], T0 + 0.3)
    reply = acc.reply(end_t=T0 + 0.3)
    assert (reply.reasoning_tokens, reply.answer_tokens) == (7, 3)
    assert reply.reasoning_field == "reasoning" and reply.first_answer_token_s == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("completion", "usage_reasoning", "reasoning", "answer", "expected", "source", "adjusted"),
    [
        (None, None, "r", "a", (None, None), None, False),  # no usage at all
        (10, 4, "r", "a", (4, 6), "usage", False),  # the server's split wins when the text agrees
        (10, None, "r", "", (10, 0), "text", False),  # all reasoning
        (10, None, "", "a", (0, 10), "text", False),  # all answer
        (10, None, "r", "a", (None, None), None, False),  # both: only /tokenize can tell
        (10, 4, "r", "", (10, 0), "text", True),  # no answer text: no answer tokens, usage overruled
        (10, 2, "", "a", (2, 8), "usage", False),  # an empty think block's tags are tokens
        (10, 0, "r", "a", (None, None), None, True),  # reasoning came, usage says none: /tokenize
        (10, 10, "", "a", (0, 10), "text", True),  # an answer came, usage left it none
    ],
)
def test_token_split(completion, usage_reasoning, reasoning, answer, expected, source, adjusted) -> None:
    split = ReasoningSplit(
        reasoning=reasoning, answer=answer, thought=bool(reasoning), truncated_reasoning=False, stray_close_tag=False
    )
    tokens = token_split(completion, usage_reasoning, split)
    assert tokens[:2] == expected
    assert (tokens.source, tokens.adjusted) == (source, adjusted)


def test_a_late_close_tag_moves_the_first_answer_token() -> None:
    acc = StreamAccumulator(T0, None)
    acc.feed([chunk({"content": "looks like an answer"})], T0 + 0.1)
    acc.feed([chunk({"content": " but</think>"})], T0 + 0.2)
    acc.feed([chunk({"content": "real answer"})], T0 + 0.5)
    acc.feed([chunk({}, finish="stop"), DONE], T0 + 0.6)
    reply = acc.reply(end_t=T0 + 0.6)
    assert reply.first_answer_token_s == pytest.approx(0.5)
    assert reply.split.answer == "real answer"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ('{"choices": [{"delta": {"content": "x"', "not JSON"),
        ('{"error": {"message": "engine died"}}', "engine died"),
        ('{"choices": ["not a choice"]}', "not shaped as the API says"),
        ('{"choices": [{"delta": {"content": 5}}]}', "not a string"),
        ('{"choices": [], "usage": [1, 2]}', "not shaped as the API says"),
    ],
)
def test_a_bad_event_is_an_error_never_an_exception(data: str, says: str) -> None:
    acc = StreamAccumulator(T0, None)
    acc.feed([chunk({"content": "ok"})], T0 + 0.1)
    acc.feed([SSEEvent(data), chunk({"content": "more"})], T0 + 0.2)
    assert says in acc.failure()
    chunks, itl_s = acc.chunks, list(acc.itl_s)
    acc.feed([chunk({"content": "after"}, finish="stop"), DONE], T0 + 0.3)  # nothing is taken after an error
    assert (acc.chunks, acc.itl_s, acc.finish_reason, acc.done) == (chunks, itl_s, None, False)
    assert says in acc.failure() and acc.ttft_s == pytest.approx(0.1)


def test_a_reply_is_whole_with_done_or_a_finish_reason() -> None:
    cut = StreamAccumulator(T0, None)
    cut.feed([chunk({"content": "half"})], T0 + 0.1)
    assert cut.failure() == INCOMPLETE_STREAM
    finished = StreamAccumulator(T0, None)
    finished.feed([chunk({"content": "all"}, finish="stop")], T0 + 0.1)
    assert finished.failure() == ""
    nothing = StreamAccumulator(T0, None)
    nothing.feed([DONE], T0 + 0.1)
    reply = nothing.reply(end_t=T0 + 0.25)
    assert nothing.failure() == "" and reply.ttft_s is None and reply.latency_s == pytest.approx(0.25)


@pytest.mark.parametrize("reasoning_field", [None, "reasoning"])
@pytest.mark.parametrize("mode", ["auto", "long", "short"])
def test_smoke_and_bench_count_a_reply_alike(fake_openai_server: Any, reasoning_field: str | None, mode: str) -> None:
    """The sync (smoke) and async (bench) transports, one accumulator: the same figures from the
    same reply (smoke used to skip tag-only chunks in TTFT/ITL and ignore usage's reasoning tokens)."""
    server = fake_openai_server(reasoning_field=reasoning_field, usage_reasoning_tokens=True, chunk_delay_s=0.002)
    with EndpointClient(server.url, api_key=server.api_key, timeout_s=10.0) as client:
        smoke = client.chat_stream(QUESTION, mode=mode, max_tokens=64)
    body = client._chat_body(QUESTION, mode, 64, 0.0, None)
    body.update(stream=True, stream_options={"include_usage": True})

    async def one():
        async with open_session(1, 10.0) as session:
            return await stream_chat_outcome(session, server.url, body, server.api_key, 10.0, mode=mode)

    bench = asyncio.run(one()).record
    assert bench.success, bench.error
    assert smoke.chunks == len(smoke.timings.itl_s) + 1 == len(bench.itl_s) + 1
    assert (smoke.reasoning_tokens, smoke.answer_tokens) == (bench.reasoning_tokens, bench.answer_tokens)
    assert (smoke.reasoning_tokens or 0) > 0 or mode == "short"
    assert (smoke.prompt_tokens, smoke.completion_tokens) == (bench.prompt_tokens, bench.output_tokens)
    assert (smoke.split.thought, smoke.split.truncated_reasoning) == (bench.thought, bench.truncated_reasoning)
    assert smoke.finish_reason == bench.finish_reason == "stop"
    assert (smoke.timings.first_answer_token_s is None) == (bench.first_answer_token_s is None)


def _reasoning_only(acc: StreamAccumulator, usage_reasoning: int, completion: int = 64) -> None:
    """What the tiny vLLM sent in auto mode: every token in the reasoning field, cut by max_tokens,
    while usage claimed only part of them were reasoning."""
    acc.feed([chunk({"reasoning": f"tok{i} "}) for i in range(completion)], T0 + 0.1)
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": completion,
        "completion_tokens_details": {"reasoning_tokens": usage_reasoning},
    }
    acc.feed([chunk({}, finish="length"), chunk(usage=usage), DONE], T0 + 0.2)


@pytest.mark.parametrize("mode", ["auto", "long", "short"])
@pytest.mark.parametrize("usage_reasoning", [0, 39, 46])
def test_no_answer_text_means_no_answer_tokens_whatever_usage_says(mode: str, usage_reasoning: int) -> None:
    acc = StreamAccumulator(T0, mode)
    _reasoning_only(acc, usage_reasoning)
    reply = acc.reply(end_t=T0 + 0.2)
    assert reply.split.answer == "" and reply.split.truncated_reasoning  # cut off while thinking
    assert (reply.reasoning_tokens, reply.answer_tokens) == (64, 0)
    assert reply.token_split_source == "text" and reply.token_split_adjusted
    assert reply.reasoning_path == "reasoning"


def test_short_mode_cut_off_inside_a_think_block_the_model_opened() -> None:
    """What the tiny vLLM did in short mode: the prompt closed the block, the random model wrote
    `<think>` and never closed it; usage said 0 reasoning tokens. It was flagged "truncated
    reasoning" with 0 reasoning tokens and all its tokens counted as answer."""
    acc = StreamAccumulator(T0, "short")
    acc.feed([chunk({"content": "word "}), chunk({"content": "<think>"}), chunk({"content": "more"})], T0 + 0.1)
    usage = {"prompt_tokens": 5, "completion_tokens": 64, "completion_tokens_details": {"reasoning_tokens": 0}}
    acc.feed([chunk({}, finish="length"), chunk(usage=usage), DONE], T0 + 0.2)
    reply = acc.reply(end_t=T0 + 0.2)
    assert reply.split.truncated_reasoning and reply.split.answer == ""
    assert (reply.reasoning_tokens, reply.answer_tokens) == (64, 0)
    assert reply.token_split_adjusted and reply.reasoning_path == "think_tags"


def test_usage_that_agrees_with_the_text_is_used_unadjusted() -> None:
    acc = StreamAccumulator(T0, "auto")
    _reasoning_only(acc, usage_reasoning=64)
    reply = acc.reply(end_t=T0 + 0.2)
    assert (reply.reasoning_tokens, reply.answer_tokens) == (64, 0)
    assert reply.token_split_source == "usage" and not reply.token_split_adjusted


def test_usage_that_leaves_a_received_answer_no_tokens_is_not_trusted() -> None:
    acc = StreamAccumulator(T0, "long")
    acc.feed([chunk({"reasoning_content": "hmm"}), chunk({"content": "12"})], T0 + 0.2)
    usage = {"prompt_tokens": 5, "completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 10}}
    acc.feed([chunk({}, finish="stop"), chunk(usage=usage), DONE], T0 + 0.3)
    reply = acc.reply(end_t=T0 + 0.3)
    # Both texts came and usage's split contradicts them: left to /tokenize, and said.
    assert (reply.reasoning_tokens, reply.answer_tokens, reply.token_split_source) == (None, None, None)
    assert reply.token_split_adjusted and reply.reasoning_path == "reasoning_content"


@pytest.mark.parametrize(
    ("mode", "content", "path"),
    [("auto", ["<think>", "a b", "</think>", "answer"], "think_tags"), ("short", ["answer"], None)],
)
def test_the_reasoning_path_is_recorded(mode: str, content: list[str], path: str | None) -> None:
    acc = StreamAccumulator(T0, mode)
    acc.feed([chunk({"content": c}) for c in content], T0 + 0.1)
    acc.feed([chunk({}, finish="stop"), DONE], T0 + 0.2)
    assert acc.reply(end_t=T0 + 0.2).reasoning_path == path


def test_an_answer_cut_by_max_tokens_is_not_cut_off_while_thinking() -> None:
    acc = StreamAccumulator(T0, "short")
    acc.feed([chunk({"content": "The answer is"})], T0 + 0.1)
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "completion_tokens_details": {"reasoning_tokens": 0}}
    acc.feed([chunk({}, finish="length"), chunk(usage=usage), DONE], T0 + 0.2)
    reply = acc.reply(end_t=T0 + 0.2)
    assert not reply.split.truncated_reasoning
    assert (reply.reasoning_tokens, reply.answer_tokens, reply.token_split_adjusted) == (0, 3, False)
