"""One streamed chat reply, accumulated from its SSE events: the rules smoke and bench share.

Both transports (`client/http.py`, sync, for smoke; `client/aio.py`, async, for bench) read the
body in network reads, cut it into events with `SSEParser`, and hand each read's events here
with the time the read arrived. This module does no I/O and reads no clock, so smoke's TTFT and
bench's TTFT are the same function of the same bytes. The rules follow `vllm bench serve`:

- a text chunk is an event whose first choice's delta carries non-empty `content`,
  `reasoning` or `reasoning_content`; TTFT is the arrival of the first, ITLs the gaps between
  consecutive ones (one token per chunk unless the server batches), latency the arrival of the
  last (the end of the stream when none came);
- events of one read share its arrival time, and their deltas reach the reasoning splitter
  merged into one: under load a read holds many events, and that is where a busy load
  generator saves its CPU;
- the first answer token is the first text the splitter files as answer (after `</think>`;
  a late `</think>` moves it); none when the reply ends with no answer;
- usage is taken from whichever event carries it, `completion_tokens_details.reasoning_tokens`
  included (vLLM sends it when its reasoning parser counts), but the counts must agree with the
  text received (`token_split`): no answer text, no answer tokens;
- a reply is whole when `[DONE]` came, or when the stream ended after a `finish_reason`;
- a malformed event, an error event or a chunk not shaped as the API says ends the
  accumulation with `error` (what a transport reports as a "stream" failure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Literal, NamedTuple

from r4b_deploy.client.reasoning import REASONING_FIELDS, ReasoningSplit, StreamSplitter, think_open_at_start
from r4b_deploy.client.sse import SSEEvent
from r4b_deploy.client.wire import DONE_MARKER, EVENT_SAMPLE_CHARS, StreamEventError, one_line, parse_stream_event

_TEXT_FIELDS = ("content", "reasoning", "reasoning_content")
INCOMPLETE_STREAM = "the stream ended without [DONE] (connection closed mid-stream)"


@dataclass(slots=True)
class StreamReply:
    """What a whole streamed reply told: timings (seconds from the request's start), text, usage."""

    split: ReasoningSplit
    latency_s: float
    ttft_s: float | None = None  # first text chunk of any kind (reasoning or answer)
    first_answer_token_s: float | None = None  # first answer text (after </think>)
    itl_s: list[float] = field(default_factory=list)  # gaps between text chunks after the first
    chunks: int = 0  # events that carried text
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # usage.prompt_tokens (None: the server sent no usage)
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # agreeing with the text received (see token_split)
    answer_tokens: int | None = None
    token_split_source: TokenSource | None = None  # "usage", "text"; None: left to /tokenize
    token_split_adjusted: bool = False  # usage's reasoning_tokens contradicted the text, and lost
    reasoning_field: str | None = None  # "reasoning" or "reasoning_content", as the server named it
    reasoning_path: ReasoningPath | None = None  # a reasoning field's name, "think_tags", None: no reasoning
    model: str | None = None  # the model name the server echoed


TokenSource = Literal["usage", "text", "tokenize"]
ReasoningPath = Literal["reasoning", "reasoning_content", "think_tags"]
THINK_TAGS_PATH: ReasoningPath = "think_tags"


class TokenSplit(NamedTuple):
    """(reasoning, answer) tokens of a reply, where they came from, and whether usage was overruled."""

    reasoning_tokens: int | None
    answer_tokens: int | None
    source: TokenSource | None  # None: not known yet (only /tokenize of the answer can tell)
    adjusted: bool = False  # usage's reasoning_tokens contradicted the text received


def token_split(completion_tokens: int | None, usage_reasoning_tokens: int | None, split: ReasoningSplit) -> TokenSplit:
    """Split `completion_tokens` so the counts agree with the text received.

    A reply with no answer text has 0 answer tokens, whatever usage says (the tiny vLLM streamed
    every token in `reasoning` while usage called a third of them answer); a reply with no
    reasoning has 0 reasoning tokens unless usage counts some (an empty think block's tags are
    tokens). Otherwise usage's split (`completion_tokens_details.reasoning_tokens`) is used when
    it leaves both received texts some tokens; when it does not, or usage gave none, the answer
    is left to the server's `/tokenize` (source None here).
    """
    if completion_tokens is None:
        return TokenSplit(None, None, None)
    usage = usage_reasoning_tokens
    if not split.answer:
        if usage == completion_tokens:
            return TokenSplit(completion_tokens, 0, "usage")
        return TokenSplit(completion_tokens, 0, "text", usage is not None)
    if usage is not None:
        reasoning_ok = usage > 0 or not split.reasoning
        if 0 <= usage < completion_tokens and reasoning_ok:
            return TokenSplit(usage, completion_tokens - usage, "usage")
        if not split.reasoning:
            return TokenSplit(0, completion_tokens, "text", True)
        return TokenSplit(None, None, None, True)
    if not split.reasoning:
        return TokenSplit(0, completion_tokens, "text")
    return TokenSplit(None, None, None)


def reasoning_path(field: str | None, split: ReasoningSplit) -> ReasoningPath | None:
    """Where the reasoning came from: the server's field, `<think>` tags in the content, or None
    (none came). A vLLM upgrade that renames the field shows here, not as zero reasoning."""
    if not split.thought:
        return None
    if field in REASONING_FIELDS:
        return field  # type: ignore[return-value]
    return THINK_TAGS_PATH


@cache
def _splitter_options(mode: str | None) -> tuple[str, str, bool | None]:
    """(open tag, close tag, think block open at the start) for `mode`, read from the model spec
    once per mode: an accumulator is made per request, on the load generator's hot path."""
    from r4b_deploy.spec import model_spec

    thinking = model_spec().thinking
    return thinking.open_tag, thinking.close_tag, think_open_at_start(mode)


def _merge(deltas: list[dict]) -> dict:
    """Several deltas as one: texts concatenated field by field, in order."""
    merged: dict[str, str] = {}
    for delta in deltas:
        for name in _TEXT_FIELDS:
            text = delta.get(name)
            if text:
                merged[name] = merged.get(name, "") + text
    return merged


class StreamAccumulator:
    """Feed the events of each network read with its arrival time; read `reply()` at the end.

    Times are the caller's clock (time.perf_counter()); `t0` is when the request was sent.
    The fields are public for a transport that reports a failure half way (ttft, ITLs so far).
    """

    __slots__ = (
        "completion_tokens",
        "done",
        "error",
        "finish_reason",
        "first_answer_s",
        "itl_s",
        "last_t",
        "model",
        "prompt_tokens",
        "reasoning_tokens",
        "splitter",
        "t0",
        "ttft_s",
    )

    def __init__(self, t0: float, mode: str | None) -> None:
        self.t0 = t0
        self.last_t = t0
        self.done = False  # [DONE] arrived
        self.error = ""
        self.ttft_s: float | None = None
        self.first_answer_s: float | None = None
        self.itl_s: list[float] = []
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.model: str | None = None
        open_tag, close_tag, open_at_start = _splitter_options(mode)
        self.splitter = StreamSplitter(open_tag=open_tag, close_tag=close_tag, think_open_at_start=open_at_start)

    def feed(self, events: list[SSEEvent], now: float) -> None:
        """Take the events of one network read, which arrived at `now` (the per-event hot path)."""
        if self.done or self.error:
            return
        deltas: list[dict] = []
        for event in events:
            data = event.data
            if data == DONE_MARKER:
                self.done = True
                break
            try:
                obj = parse_stream_event(data)
            except StreamEventError as exc:
                self.error = str(exc)
                return
            try:
                if self.model is None:
                    self.model = obj.get("model")
                choices = obj.get("choices")
                if choices:
                    choice = choices[0]
                    delta = choice.get("delta")
                    if delta and (delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content")):
                        deltas.append(delta)
                        if self.ttft_s is None:
                            self.ttft_s = now - self.t0
                        else:
                            self.itl_s.append(now - self.last_t)
                        self.last_t = now
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
                usage = obj.get("usage")
                if usage:
                    self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
                    self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
                    details = usage.get("completion_tokens_details")
                    if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
                        self.reasoning_tokens = details["reasoning_tokens"]
            except (AttributeError, TypeError, KeyError) as exc:  # a list where a dict belongs, and so on
                sample = one_line(data, EVENT_SAMPLE_CHARS)
                self.error = f"malformed SSE: a chunk not shaped as the API says ({type(exc).__name__}): {sample!r}"
                return
        if not deltas:
            return
        try:
            channel = self.splitter.feed(deltas[0] if len(deltas) == 1 else _merge(deltas))
        except (AttributeError, TypeError) as exc:  # a text field that is not a string
            self.error = f"malformed SSE: a delta's text is not a string ({type(exc).__name__})"
            return
        # answer_deltas restarts at a late </think>: the latest "first" answer delta is the real one.
        if channel == "answer" and self.splitter.answer_deltas == 1:
            self.first_answer_s = now - self.t0

    @property
    def chunks(self) -> int:
        """Text chunks so far: the first, then one per inter-token gap."""
        return 0 if self.ttft_s is None else len(self.itl_s) + 1

    @property
    def whole(self) -> bool:
        """The reply is complete: [DONE] came, or the stream ended after a finish_reason."""
        return self.done or self.finish_reason is not None

    def failure(self) -> str:
        """Why the reply cannot be used, once the stream has ended ("" when it can)."""
        if self.error:
            return self.error
        return "" if self.whole else INCOMPLETE_STREAM

    def _first_answer_s(self, split: ReasoningSplit) -> float | None:
        # Text that looked like answer may have turned out to be reasoning (a late </think>).
        return self.first_answer_s if split.answer else None

    def reply(self, end_t: float) -> StreamReply:
        """The reply as a whole; `end_t` is when the stream ended (latency when no text came)."""
        split = self.splitter.finish(self.finish_reason)
        tokens = token_split(self.completion_tokens, self.reasoning_tokens, split)
        return StreamReply(
            split=split,
            latency_s=(self.last_t if self.ttft_s is not None else end_t) - self.t0,
            ttft_s=self.ttft_s,
            first_answer_token_s=self._first_answer_s(split),
            itl_s=self.itl_s,
            chunks=self.chunks,
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=tokens.reasoning_tokens,
            answer_tokens=tokens.answer_tokens,
            token_split_source=tokens.source,
            token_split_adjusted=tokens.adjusted,
            reasoning_field=self.splitter.reasoning_field,
            reasoning_path=reasoning_path(self.splitter.reasoning_field, split),
            model=self.model,
        )
