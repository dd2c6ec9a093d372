"""Whitelists for every value that reaches a rendered file.

Rendered files are read by a shell (Dockerfile RUN lines, `vllm serve $(cat vllm-args.txt)`),
by YAML parsers with `$` interpolation (compose) and by env-file parsers that differ between
compose v1 and v2. Rather than escape for each of them, a value must match a strict pattern;
a value that does not is refused with a message saying which character is the problem, so a
user never gets a broken or injectable file.
"""

from __future__ import annotations

import re

# Characters a shell, YAML or an env-file parser gives a meaning to, with a name for messages.
_UNSAFE_NAMES: dict[str, str] = {
    "\n": "a newline",
    "\r": "a carriage return",
    "\t": "a tab",
    " ": "a space",
    '"': "a double quote",
    "'": "a single quote",
    "`": "a backtick",
    "$": "`$`",
    ";": "`;`",
    "|": "`|`",
    "&": "`&`",
    "<": "`<`",
    ">": "`>`",
    "\\": "a backslash",
    "(": "`(`",
    ")": "`)`",
    "{": "`{`",
    "}": "`}`",
    "[": "`[`",
    "]": "`]`",
    "*": "`*`",
    "?": "`?`",
    "!": "`!`",
    "#": "`#`",
    "~": "`~`",
}

# A Hugging Face repo id: "owner/name" (hub rules: letters, digits, `-`, `_`, `.`; at most 96 each).
HF_MODEL_ID = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
)
# An absolute path made of portable characters (no `:`; it would split a compose volume spec).
ABSOLUTE_PATH = re.compile(r"/(?:[A-Za-z0-9._@+-]+(?:/[A-Za-z0-9._@+-]+)*/?)?")
# The name clients send as "model": letters, digits, `.`, `_`, `-`, `/`.
SERVED_MODEL_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?")
# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], path in lower case.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    rf"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
# A PEP 440 version as pip pins it ("0.11.0", "0.10.2.post1", "0.11.0rc1", "0.32.0+cpu").
VERSION = re.compile(r"[0-9]+(?:\.[0-9]+){0,3}(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?(?:\+[a-z0-9.]+)?")
# A pip requirement pinned exactly, as profiles/vllm.yaml lists them ("torch==2.13.0+cpu").
PINNED_REQUIREMENT = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]*=={VERSION.pattern}")
# A long option of `vllm serve`, optionally with "=value".
VLLM_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*(?:=[A-Za-z0-9._:/,=+@%-]+)?")
# The value that follows a flag: no shell, YAML or JSON syntax.
VLLM_ARG_VALUE = re.compile(r"[A-Za-z0-9._:/,=+@%-]+")
# An environment variable name.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A value written into an env file or a Dockerfile ENV line (compose v1 and v2 parse it alike).
ENV_VALUE = re.compile(r"[A-Za-z0-9._:/,=+@%-]*")


def unsafe_character(value: str) -> str | None:
    """The name of the first character of `value` that a shell or YAML would interpret, if any."""
    for char in value:
        if char in _UNSAFE_NAMES:
            return _UNSAFE_NAMES[char]
        if not char.isprintable():
            return f"the control character {char!r}"
        if not char.isascii():
            return f"the non-ASCII character {char!r}"
    return None


def problem(value: str, pattern: re.Pattern[str], expected: str) -> str | None:
    """Why `value` is unacceptable (a named character first, else the expected form), or None."""
    if not value:
        return f"must not be empty; expected {expected}"
    bad = unsafe_character(value)
    if bad is not None:
        return f"contains {bad}; expected {expected}"
    if pattern.fullmatch(value) is None:
        return f"expected {expected}, got {value!r}"
    return None
