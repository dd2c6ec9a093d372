"""`bench --dataset FILE.jsonl`: replay the user's own requests.

One request a line: an OpenAI chat `messages` list, or `{"messages": [...], "max_tokens": N}`.
Images are data URLs or local paths (read here and turned into data URLs, size-capped, so the
load generator never touches the disk). The whole file is validated before any load is sent;
every problem names its line, and is a UsageError (exit 4).
"""

from __future__ import annotations

import base64
import functools
import json
import mimetypes
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from r4b_deploy.errors import UsageError

DATASET_MAX_BYTES = 256 * 1024 * 1024  # the file itself: bodies are held in memory for the run
DATASET_MAX_LINES = 100_000
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # one image read from a path (vLLM's default media fetch cap is alike)
ROLES = ("system", "user", "assistant")
_DATA_URL_PREFIX = "data:"
_REMOTE_PREFIXES = ("http://", "https://")
_FIX = 'one JSON per line: a messages list, or {"messages": [...], "max_tokens": N}'
_IMAGE_FIX = "give an image as a data URL, an absolute path, or a path relative to the dataset's folder"


class DatasetRequest(BaseModel):
    """One replayed request: the messages as sent (image paths already data URLs)."""

    model_config = ConfigDict(frozen=True)

    line: int
    messages: list[dict[str, Any]]
    max_tokens: int | None = Field(default=None, gt=0)
    images: int = 0


def _problem(path: Path, line: int, what: str, fix: str = _FIX) -> UsageError:
    return UsageError(f"{path}:{line}: {what}", fix=fix)


def _image_data_url(path: Path, line: int, ref: str) -> str:
    """A local image as a data URL; relative paths are relative to the dataset's folder."""
    image = Path(ref.removeprefix("file://")).expanduser()
    if not image.is_absolute():
        image = path.parent / image
    try:
        size = image.stat().st_size
        if size > IMAGE_MAX_BYTES:
            raise _problem(path, line, f"image {ref} is {size} bytes (at most {IMAGE_MAX_BYTES})", "shrink it")
        data = image.read_bytes()
    except OSError as exc:
        raise _problem(path, line, f"cannot read image {ref}: {exc.strerror or exc}", _IMAGE_FIX) from None
    mime = mimetypes.guess_type(image.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise _problem(path, line, f"{ref} is not an image file (.png, .jpg, ...)", _IMAGE_FIX)
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _content_part(path: Path, line: int, part: Any) -> tuple[dict[str, Any], int]:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _problem(path, line, "a content part must be an object with a 'type'")
    if part["type"] != "image_url":
        return part, 0
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _problem(path, line, "an image_url part needs image_url.url (a data URL or a local path)")
    if url.startswith(_REMOTE_PREFIXES):
        raise _problem(path, line, f"image {url} is remote (the benchmark downloads nothing)", _IMAGE_FIX)
    if not url.startswith(_DATA_URL_PREFIX):
        url = _image_data_url(path, line, url)
    return {**part, "image_url": {**(image if isinstance(image, dict) else {}), "url": url}}, 1


def _message(path: Path, line: int, msg: Any) -> tuple[dict[str, Any], int]:
    if not isinstance(msg, dict) or msg.get("role") not in ROLES:
        raise _problem(path, line, f"each message needs a role ({', '.join(ROLES)})")
    content = msg.get("content")
    if isinstance(content, str):
        return msg, 0
    if not isinstance(content, list) or not content:
        raise _problem(path, line, "a message's content must be text or a non-empty list of parts")
    parts = [_content_part(path, line, part) for part in content]
    return {**msg, "content": [p for p, _ in parts]}, sum(n for _, n in parts)


def parse_line(path: Path, line: int, text: str) -> DatasetRequest:
    """One line of the file as a request; UsageError naming the line for anything else."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _problem(path, line, f"not JSON ({exc})") from None
    max_tokens = None
    if isinstance(value, dict):
        unknown = set(value) - {"messages", "max_tokens"}
        if unknown:
            raise _problem(path, line, f"unknown key(s) {', '.join(sorted(unknown))}")
        max_tokens = value.get("max_tokens")
        if max_tokens is not None and (type(max_tokens) is not int or max_tokens <= 0):
            raise _problem(path, line, f"max_tokens must be a positive integer, got {max_tokens!r}")
        value = value.get("messages")
    if not isinstance(value, list) or not value:
        raise _problem(path, line, "no messages: expected a non-empty list of chat messages")
    messages = [_message(path, line, msg) for msg in value]
    if messages[-1][0]["role"] == "assistant":
        raise _problem(path, line, "the last message is the assistant's: nothing for the model to answer")
    return DatasetRequest(
        line=line, messages=[m for m, _ in messages], max_tokens=max_tokens, images=sum(n for _, n in messages)
    )


def load_dataset(path: Path) -> list[DatasetRequest]:
    """Every request of the file, in order (blank lines skipped); UsageError on the first bad line."""
    try:
        size = path.stat().st_size
        if size > DATASET_MAX_BYTES:
            raise UsageError(f"{path} is {size} bytes (at most {DATASET_MAX_BYTES})", fix="replay a sample of it")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --dataset {path}: {exc.strerror or exc}", fix="check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", fix=_FIX) from None
    requests = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            requests.append(parse_line(path, number, raw))
        if len(requests) > DATASET_MAX_LINES:
            raise UsageError(f"{path} has over {DATASET_MAX_LINES} requests", fix="replay a sample of it")
    if not requests:
        raise UsageError(f"{path} holds no requests", fix=_FIX)
    return requests


@functools.lru_cache(maxsize=1)
def load_dataset_once(path: Path) -> list[DatasetRequest]:
    """`load_dataset`, read once per run: the CLI validates the file up front and the pools reuse it."""
    return load_dataset(path)
