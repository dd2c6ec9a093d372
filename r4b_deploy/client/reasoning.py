"""Split a reply into reasoning and answer, whatever the server's reasoning parser did.

vLLM has no R-4B reasoning parser: with `qwen3` or `deepseek_r1` the reasoning arrives in a
`reasoning` (new vLLM) or `reasoning_content` (older) field; with none it stays inside the
content between `<think>` and `</think>`; and parsers mis-split, leaving a stray `</think>` in
the content. One scanner handles all of it, streamed or not, with these rules:

- reasoning = the reasoning field(s) + all content before the LAST `</think>` (tags removed);
  answer = the content after it;
- a `</think>` with no open think block is how a template that opened the block in the prompt
  looks, the first time; after an earlier `</think>`, when the server already filed
  reasoning in its own field, or when the prompt closed the block (short mode), it is a stray
  tag: flagged, and the last one still wins;
- a think block still open at `finish_reason == "length"` is truncated reasoning: the answer
  is "" (it is never reported as the answer).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

DEFAULT_OPEN_TAG = "<think>"
DEFAULT_CLOSE_TAG = "</think>"
REASONING_FIELDS = ("reasoning", "reasoning_content")  # new vLLM, older vLLM
FINISH_LENGTH = "length"


def think_open_at_start(mode: str | None) -> bool | None:
    """Whether a reply in `mode` starts inside a think block: True, False, or None (unknown: auto).

    Read from the model spec (thinking.prompt_opens_block / prompt_closes_block). Safe if a
    template does not open it: a <think> the model writes inside an already open block is dropped.
    """
    from r4b_deploy.spec import model_spec

    thinking = model_spec().thinking
    if mode in thinking.prompt_opens_block:
        return True
    if mode in thinking.prompt_closes_block:
        return False
    return None


Channel = Literal["reasoning", "answer"]


class ReasoningSplit(BaseModel):
    reasoning: str
    answer: str
    thought: bool  # the reply carried non-empty reasoning (auto mode: which way the model went)
    truncated_reasoning: bool  # a think block still open when the token limit hit
    stray_close_tag: bool  # a </think> the server should not have left in the content


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag` (a tag cut by a chunk)."""
    if tag[0] not in text[-(len(tag) - 1) :]:
        return 0  # fast path: the common delta has no tag start near its end
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class _TagScanner:
    """Incremental content scanner shared by the one-shot and the streaming splitters."""

    __slots__ = (
        "_after",
        "_before",
        "_block",
        "_carry",
        "_fresh",
        "close_tag",
        "closes",
        "field_seen",
        "in_think",
        "known_closed",
        "open_tag",
        "opens",
        "stray",
    )

    def __init__(self, open_tag: str, close_tag: str, think_open_at_start: bool | None) -> None:
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.in_think = bool(think_open_at_start)
        # False: the prompt closed the block, so even a first bare </think> is stray.
        self.known_closed = think_open_at_start is False
        self.opens = 0
        self.closes = 0
        self.field_seen = False
        self.stray = False
        self._carry = ""
        self._fresh = True
        self._before: list[str] = []  # content up to the last </think> (reasoning)
        self._after: list[str] = []  # content after it, outside any think block (answer)
        self._block: list[str] = []  # content inside the think block now open

    def feed(self, text: str) -> tuple[str, str]:
        """Scan more content; return (reasoning text, answer text) it added, for live channels."""
        if self._fresh:
            self._fresh = False
            if self.in_think and self.field_seen:
                # The server's parser already took the block the prompt opened: content is the answer.
                self.in_think = False
        if self._carry:
            text = self._carry + text
            self._carry = ""
        reasoning_parts: list[str] = []
        answer_parts: list[str] = []
        open_tag, close_tag = self.open_tag, self.close_tag
        while text:
            o_idx = text.find(open_tag)
            c_idx = text.find(close_tag)
            if self.in_think:
                if o_idx >= 0 and (c_idx < 0 or o_idx < c_idx):
                    # <think> inside an open block (the prompt opened it, the model wrote it again): dropped
                    self._add_block(text[:o_idx], reasoning_parts)
                    text = text[o_idx + len(open_tag) :]
                    continue
                if c_idx >= 0:
                    self._add_block(text[:c_idx], reasoning_parts)
                    self._close(reasoning_parts, answer_parts)
                    text = text[c_idx + len(close_tag) :]
                    continue
                keep = max(_partial_suffix(text, open_tag), _partial_suffix(text, close_tag))
                self._add_block(text[: len(text) - keep], reasoning_parts)
                self._carry = text[len(text) - keep :]
                break
            if o_idx >= 0 and (c_idx < 0 or o_idx < c_idx):
                self._add_answer(text[:o_idx], answer_parts)
                self.in_think = True
                self.opens += 1
                text = text[o_idx + len(open_tag) :]
                continue
            if c_idx >= 0:
                # A close with no open block: the prompt opened it, or a stray tag.
                if self.closes or self.opens or self.field_seen or self.known_closed:
                    self.stray = True
                head = text[:c_idx]
                if head:
                    self._after.append(head)
                    answer_parts.append(head)
                self._close(reasoning_parts, answer_parts)
                text = text[c_idx + len(close_tag) :]
                continue
            keep = max(_partial_suffix(text, open_tag), _partial_suffix(text, close_tag))
            self._add_answer(text[: len(text) - keep], answer_parts)
            self._carry = text[len(text) - keep :]
            break
        return "".join(reasoning_parts), "".join(answer_parts)

    def _add_block(self, text: str, parts: list[str]) -> None:
        if text:
            self._block.append(text)
            parts.append(text)

    def _add_answer(self, text: str, parts: list[str]) -> None:
        if text:
            self._after.append(text)
            parts.append(text)

    def _close(self, reasoning_parts: list[str], answer_parts: list[str]) -> None:
        # The last </think> wins: whatever looked like answer before it was reasoning.
        reasoning_parts.extend(answer_parts)
        answer_parts.clear()
        self._before.extend(self._after)
        self._before.extend(self._block)
        self._after.clear()
        self._block.clear()
        self.in_think = False
        self.closes += 1

    def finish(self, field_reasoning: str, finish_reason: str | None) -> ReasoningSplit:
        if self._carry:  # a tag start that never completed is plain text
            carry, self._carry = self._carry, ""
            (self._block if self.in_think else self._after).append(carry)
        block = "".join(self._block).strip()
        open_at_end = self.in_think
        truncated = open_at_end and finish_reason == FINISH_LENGTH
        answer = "" if truncated else "".join(self._after).strip()
        reasoning = "".join((field_reasoning, *self._before, block)).strip()
        if field_reasoning.strip() and not answer and finish_reason == FINISH_LENGTH and not self.closes:
            truncated = True  # the parser filed an unfinished reasoning in its field, nothing after it
        return ReasoningSplit(
            reasoning=reasoning,
            answer=answer,
            thought=bool(reasoning) or truncated,  # cut off inside a think block, even an empty one: thinking
            truncated_reasoning=truncated,
            stray_close_tag=self.stray or self.close_tag in answer,
        )


def split_reasoning(
    content: str | None,
    reasoning: str | None,
    finish_reason: str | None,
    *,
    open_tag: str = DEFAULT_OPEN_TAG,
    close_tag: str = DEFAULT_CLOSE_TAG,
    think_open_at_start: bool | None = None,
) -> ReasoningSplit:
    """Split a whole (non-streamed) reply.

    `think_open_at_start` (see `think_open_at_start(mode)`): True when the chat template opened
    the think block in the prompt (content with no tags at all is then reasoning, not an
    answer); False when the prompt closed it (any `</think>` is stray); None when unknown (a
    first bare `</think>` is taken as the end of a block the prompt opened).
    """
    scanner = _TagScanner(open_tag, close_tag, think_open_at_start)
    field = reasoning or ""
    scanner.field_seen = bool(field.strip())
    if content:
        scanner.feed(content)
    return scanner.finish(field, finish_reason)


class StreamSplitter:
    """The same split, fed one streamed `delta` at a time.

    `feed` says which channel the delta's new text went to, so a client can time the first
    token of each; `answer_deltas` counts deltas that added answer text since the last
    `</think>` (a late `</think>` turns earlier "answer" text into reasoning and restarts the
    count, so `answer_deltas == 1` marks the real first answer token).
    """

    __slots__ = ("_field_parts", "_scanner", "answer_deltas", "reasoning_deltas", "reasoning_field")

    def __init__(
        self,
        *,
        open_tag: str = DEFAULT_OPEN_TAG,
        close_tag: str = DEFAULT_CLOSE_TAG,
        think_open_at_start: bool | None = None,
    ) -> None:
        self._scanner = _TagScanner(open_tag, close_tag, think_open_at_start)
        self._field_parts: list[str] = []
        self.reasoning_field: str | None = None  # the reasoning field name the server used, if any
        self.reasoning_deltas = 0
        self.answer_deltas = 0

    def feed(self, delta: dict) -> Channel | None:
        got_reasoning = False
        for name in REASONING_FIELDS:
            value = delta.get(name)
            if value:
                self._field_parts.append(value)
                self.reasoning_field = name
                self._scanner.field_seen = True
                got_reasoning = True
        content = delta.get("content")
        got_answer = False
        if content:
            closes = self._scanner.closes
            reasoning_text, answer_text = self._scanner.feed(content)
            if self._scanner.closes != closes:
                self.answer_deltas = 0
            got_reasoning = got_reasoning or bool(reasoning_text)
            got_answer = bool(answer_text.strip())
        if got_answer:
            self.answer_deltas += 1
            return "answer"
        if got_reasoning:
            self.reasoning_deltas += 1
            return "reasoning"
        return None

    def finish(self, finish_reason: str | None) -> ReasoningSplit:
        return self._scanner.finish("".join(self._field_parts), finish_reason)
