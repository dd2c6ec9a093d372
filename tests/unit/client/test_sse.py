"""The SSE parser gives the same events however the network cuts the bytes."""

from __future__ import annotations

import json
import random

import pytest

from r4b_deploy.client.sse import SSEEvent, SSEParser

# A stream shaped like vLLM's, plus the rest of the format: comments, event/id fields,
# multi-line data, multibyte UTF-8 (2, 3 and 4 bytes), a field with no space after the colon.
RECORDED = (
    ": keep-alive comment\n"
    'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    'data: {"choices":[{"delta":{"content":"h\u00e9llo \u4f60\u597d \U0001f642"}}]}\n\n'
    "event: note\nid: 7\ndata: line one\ndata: line two\n\n"
    "data:no-space\n\n"
    'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    "data: [DONE]\n\n"
).encode()

EXPECTED = [
    SSEEvent('{"choices":[{"delta":{"role":"assistant","content":""}}]}'),
    SSEEvent('{"choices":[{"delta":{"content":"h\u00e9llo \u4f60\u597d \U0001f642"}}]}'),
    SSEEvent("line one\nline two", event="note", id="7"),
    SSEEvent("no-space", id="7"),  # the last event id persists, as the spec says
    SSEEvent('{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}', id="7"),
    SSEEvent("[DONE]", id="7"),
]


def parse_pieces(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


def test_whole_stream_gives_the_expected_events() -> None:
    assert parse_pieces([RECORDED]) == EXPECTED


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_gives_the_same_events(line_end: bytes) -> None:
    stream = RECORDED.replace(b"\n", line_end)
    for cut in range(len(stream) + 1):
        assert parse_pieces([stream[:cut], stream[cut:]]) == EXPECTED, f"cut at byte {cut}"


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_byte_by_byte_and_random_cuts_give_the_same_events(line_end: bytes) -> None:
    stream = RECORDED.replace(b"\n", line_end)
    assert parse_pieces([stream[i : i + 1] for i in range(len(stream))]) == EXPECTED
    rng = random.Random(1234)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert parse_pieces(pieces) == EXPECTED, f"cuts {cuts}"


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SSEEvent("a")]
    # the \r above ended a blank line; a following \n is that line end's second half
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("b")]


def test_a_leading_bom_is_dropped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for cut in range(len(stream) + 1):
        assert parse_pieces([stream[:cut], stream[cut:]]) == [SSEEvent("x")]


def test_events_without_data_are_not_dispatched() -> None:
    assert parse_pieces([b"event: ping\n\nid: 3\n\n: only a comment\n\n"]) == []


def test_field_without_colon_and_unknown_fields() -> None:
    # "data" alone is a data line with an empty value; retry and unknown fields are ignored
    events = parse_pieces([b"retry: 10\nfoo: bar\ndata\ndata: x\n\n"])
    assert events == [SSEEvent("\nx")]


def test_close_flushes_an_event_left_without_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\ndata: tail') == []
    assert parser.close() == [SSEEvent('{"a": 1}\ntail')]
    assert SSEParser().close() == []


def test_invalid_utf8_is_replaced_not_raised() -> None:
    (event,) = parse_pieces([b"data: bad \xff\xfe end\n\n"])
    assert event.data.startswith("bad ") and event.data.endswith(" end") and "\ufffd" in event.data


def test_many_events_in_one_feed() -> None:
    body = b"".join(b"data: " + json.dumps({"i": i}).encode() + b"\n\n" for i in range(1000))
    events = SSEParser().feed(body)
    assert [json.loads(e.data)["i"] for e in events] == list(range(1000))


def test_a_line_that_never_ends_is_refused_not_buffered() -> None:
    from r4b_deploy.client.sse import LINE_MAX_BYTES, SSELineTooLong

    parser = SSEParser()
    parser.feed(b"data: " + b"x" * (LINE_MAX_BYTES // 2))
    with pytest.raises(SSELineTooLong):
        parser.feed(b"x" * LINE_MAX_BYTES)
