"""Incremental Server-Sent Events parser (the WHATWG event-stream format).

Network reads split a stream anywhere: inside a line, inside a UTF-8 character, between the
\\r and \\n of a line end. The parser therefore works on bytes and decodes only whole lines
(a line end is ASCII, so a whole line never ends inside a multibyte character). It is on the
load generator's hot path (~20k events/s on one core), so the common case, `data: ...\\n`
lines, takes a short path with no per-field dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"
_CR = b"\r"
_LF = b"\n"
_DATA_PREFIX = b"data: "
_DATA_PREFIX_LEN = len(_DATA_PREFIX)
LINE_MAX_BYTES = 1024 * 1024  # one line of a stream; an OpenAI chunk's line is ~200 bytes


class SSELineTooLong(ValueError):
    """A line that never ends: the parser would have to keep all of it in memory."""


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event. `data` lines are joined by \\n; `[DONE]` is plain data (callers check)."""

    data: str
    event: str | None = None
    id: str | None = None


class SSEParser:
    """Feed raw bytes as they arrive; get back the events completed so far.

    Follows the spec: `:` lines are comments, a field line without `:` has an empty value,
    one space after the colon is dropped, `retry` and unknown fields are ignored, an event is
    dispatched at a blank line and only if it carried data. The last event id persists across
    events, as the spec's "last event ID" does. `close()` flushes an event left without its
    closing blank line (a server that closed the connection early): callers that need the
    stream's own end marker (`[DONE]`) still see that it never came.
    """

    __slots__ = ("_buf", "_data", "_event", "_id", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._skip_lf = False  # the previous chunk ended in \r: a leading \n belongs to that line end
        self._started = False  # a leading BOM is stripped once

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events `chunk` completed; SSELineTooLong when a line outgrows LINE_MAX_BYTES."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == _LF:
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf  # too short to tell whether this is a BOM
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        if _CR in buf:
            if buf.endswith(_CR):
                # The \n of a \r\n may come in the next chunk: end the line here, drop that \n later.
                self._skip_lf = True
            buf = buf.replace(b"\r\n", _LF).replace(_CR, _LF)
        lines = buf.split(_LF)
        self._buf = lines.pop()  # the unfinished last line (b"" when buf ended with a line end)
        if len(self._buf) > LINE_MAX_BYTES:
            raise SSELineTooLong(f"malformed SSE: a line over {LINE_MAX_BYTES} bytes without a line end")
        return self._lines(lines)

    def close(self) -> list[SSEEvent]:
        """End of stream: treat a pending partial line as complete and flush a pending event."""
        lines = [self._buf] if self._buf else []
        self._buf = b""
        lines.append(b"")
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for raw in lines:
            if not raw:
                if data:
                    joined = data[0] if len(data) == 1 else "\n".join(data)
                    events.append(SSEEvent(joined, self._event, self._id))
                    data.clear()
                self._event = None
                continue
            if raw.startswith(_DATA_PREFIX):  # the hot path
                data.append(raw[_DATA_PREFIX_LEN:].decode("utf-8", "replace"))
                continue
            line = raw.decode("utf-8", "replace")
            if line[0] == ":":
                continue
            name, sep, value = line.partition(":")
            if sep and value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\x00" not in value:
                self._id = value
        return events
