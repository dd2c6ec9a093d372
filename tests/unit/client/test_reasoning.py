"""Reasoning/answer split: fields, tags, last </think> wins, truncation, stray tags, streaming."""

from __future__ import annotations

import pytest

from r4b_deploy.client.reasoning import ReasoningSplit, StreamSplitter, split_reasoning, think_open_at_start

# (id, content, reasoning field, finish_reason, think_open_at_start,
#  expected reasoning, answer, thought, truncated_reasoning, stray_close_tag)
CASES = [
    ("plain answer", "Twelve.", None, "stop", None, "", "Twelve.", False, False, False),
    ("empty reply", None, None, "stop", None, "", "", False, False, False),
    (
        "tags in content",
        "<think>add 7 and 5</think>\n\n12",
        None,
        "stop",
        None,
        "add 7 and 5",
        "12",
        True,
        False,
        False,
    ),
    ("empty think block", "<think>\n\n</think>\n\n12", None, "stop", None, "", "12", False, False, False),
    ("reasoning field", "12", "add them", "stop", None, "add them", "12", True, False, False),
    ("reasoning_content field", "\n\n12", "add them", "stop", None, "add them", "12", True, False, False),
    # the prompt opened the block (Qwen3 long mode): the first bare </think> is its end, not stray
    (
        "prompt-opened block, unknown mode",
        "add them</think>12",
        None,
        "stop",
        None,
        "add them",
        "12",
        True,
        False,
        False,
    ),
    ("prompt-opened block, long", "add them</think>12", None, "stop", True, "add them", "12", True, False, False),
    ("model repeats <think> in long", "<think>add</think>12", None, "stop", True, "add", "12", True, False, False),
    # last </think> wins, and the extra one is flagged
    ("two closes", "<think>a</think>b</think>c", None, "stop", None, "ab", "c", True, False, True),
    ("close after parser split", "</think>\n\n12", "add them", "stop", None, "add them", "12", True, False, True),
    ("close in short mode", "</think>12", None, "stop", False, "", "12", False, False, True),
    # a think block still open at the token limit is truncated reasoning, never the answer
    ("open at length", "<think>add 7 and", None, "length", None, "add 7 and", "", True, True, False),
    ("open at length, long", "add 7 and", None, "length", True, "add 7 and", "", True, True, False),
    ("open at stop, long", "add 7 and", None, "stop", True, "add 7 and", "", True, False, False),
    ("parser field cut at length", None, "add 7 and", "length", True, "add 7 and", "", True, True, False),
    ("parser field then answer cut", "The ans", "add", "length", True, "add", "The ans", True, False, False),
    ("answer cut at length, no think", "The ans", None, "length", None, "", "The ans", False, False, False),
    (
        "closed then length in answer",
        "<think>a</think>The ans",
        None,
        "length",
        None,
        "a",
        "The ans",
        True,
        False,
        False,
    ),
    (
        "new block after answer, at length",
        "<think>a</think>x<think>b",
        None,
        "length",
        None,
        "ab",
        "",
        True,
        True,
        False,
    ),
    ("text before block", "Sure. <think>a</think>12", None, "stop", None, "Sure. a", "12", True, False, False),
    ("incomplete tag is text", "12 </thi", None, "stop", None, "", "12 </thi", False, False, False),
]


@pytest.mark.parametrize(
    ("content", "field", "finish", "opened", "reasoning", "answer", "thought", "truncated", "stray"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_split_reasoning(
    content: str | None,
    field: str | None,
    finish: str,
    opened: bool | None,
    reasoning: str,
    answer: str,
    thought: bool,
    truncated: bool,
    stray: bool,
) -> None:
    expected = ReasoningSplit(
        reasoning=reasoning, answer=answer, thought=thought, truncated_reasoning=truncated, stray_close_tag=stray
    )
    assert split_reasoning(content, field, finish, think_open_at_start=opened) == expected


def _stream(content: str | None, field: str | None, size: int, opened: bool | None) -> list[dict]:
    deltas = [{"reasoning": field[i : i + size]} for i in range(0, len(field), size)] if field else []
    if content:
        deltas += [{"content": content[i : i + size]} for i in range(0, len(content), size)]
    return deltas


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
@pytest.mark.parametrize(("content", "field", "finish", "opened"), [c[1:5] for c in CASES], ids=[c[0] for c in CASES])
def test_streamed_split_matches_the_whole_split(
    content: str | None, field: str | None, finish: str, opened: bool | None, size: int
) -> None:
    """Tags cut anywhere across deltas give the same split as the whole reply."""
    splitter = StreamSplitter(think_open_at_start=opened)
    for delta in _stream(content, field, size, opened):
        splitter.feed(delta)
    assert splitter.finish(finish) == split_reasoning(content, field, finish, think_open_at_start=opened)


def test_channels_follow_the_think_block_across_split_tags() -> None:
    splitter = StreamSplitter()
    pieces = ["<th", "ink>", "add", " 7", "</th", "ink>", "\n\n", "12", "."]
    channels = [splitter.feed({"content": p}) for p in pieces]
    # tag fragments and whitespace-only answer text carry no visible token of either channel
    assert channels == [None, None, "reasoning", "reasoning", None, None, None, "answer", "answer"]
    assert splitter.reasoning_deltas == 2 and splitter.answer_deltas == 2


def test_reasoning_fields_are_the_reasoning_channel() -> None:
    splitter = StreamSplitter()
    assert splitter.feed({"role": "assistant", "content": ""}) is None
    assert splitter.feed({"reasoning_content": "think"}) == "reasoning"
    assert splitter.feed({"content": "12"}) == "answer"
    assert splitter.reasoning_field == "reasoning_content"
    split = splitter.finish("stop")
    assert (split.reasoning, split.answer, split.thought) == ("think", "12", True)


def test_a_late_close_tag_restarts_the_answer_count() -> None:
    """Text that looked like answer becomes reasoning when a bare </think> follows it."""
    splitter = StreamSplitter()
    assert splitter.feed({"content": "add them"}) == "answer"
    assert splitter.answer_deltas == 1
    assert splitter.feed({"content": "</think>"}) is None
    assert splitter.answer_deltas == 0
    assert splitter.feed({"content": "12"}) == "answer"
    assert splitter.answer_deltas == 1  # the real first answer token
    assert splitter.finish("stop").reasoning == "add them"


def test_long_mode_starts_inside_the_block_unless_a_parser_took_it() -> None:
    no_parser = StreamSplitter(think_open_at_start=True)
    assert no_parser.feed({"content": "add"}) == "reasoning"
    with_parser = StreamSplitter(think_open_at_start=True)
    assert with_parser.feed({"reasoning": "add"}) == "reasoning"
    assert with_parser.feed({"content": "12"}) == "answer"
    assert with_parser.finish("stop").answer == "12"


@pytest.mark.parametrize(("mode", "expected"), [("long", True), ("short", False), ("auto", None), (None, None)])
def test_think_open_at_start_by_mode(mode: str | None, expected: bool | None) -> None:
    assert think_open_at_start(mode) is expected


def test_custom_tags() -> None:
    split = split_reasoning("<r>why</r>so", None, "stop", open_tag="<r>", close_tag="</r>")
    assert (split.reasoning, split.answer) == ("why", "so")


def test_an_empty_think_block_cut_off_is_thinking_not_an_answer() -> None:
    """Seen on the tiny vLLM in short mode: `<think>` and whitespace until max_tokens. Its tokens are
    reasoning, so the flags must say it thought (it was once `thought=False, truncated=True`)."""
    split = split_reasoning("<think>\n\n   \n", None, "length")
    assert (split.reasoning, split.answer) == ("", "")
    assert split.truncated_reasoning and split.thought
