"""The deployment's env file, r4b.env: the only place its secrets live.

Mode 0600 from the moment it exists (created through os.open with that mode, then renamed over
the old one). VLLM_API_KEY is generated once and kept across re-renders, so clients that hold
it keep working; HF_TOKEN is copied from the environment variable the user names. Values are
restricted to characters that compose v1 and v2 parse the same way (v2 interprets quotes, v1
does not), which every token format we write satisfies.
"""

from __future__ import annotations

import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from r4b_deploy.errors import UsageError
from r4b_deploy.render import validate

ENV_FILE_NAME = "r4b.env"
ENV_FILE_MODE = 0o600
API_KEY_VAR = "VLLM_API_KEY"  # vLLM reads its --api-key from this variable when the flag is absent
HF_TOKEN_VAR = "HF_TOKEN"  # what huggingface_hub reads inside the container
API_KEY_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits


def generate_api_key() -> str:
    return secrets.token_urlsafe(API_KEY_BYTES)


def parse_env_text(text: str, source: str = ENV_FILE_NAME) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped. A malformed line is a UsageError."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or validate.ENV_NAME.fullmatch(key) is None:
            # Never echo the line: it may hold a secret.
            raise UsageError(
                f"{source}: line {number} is not KEY=VALUE",
                fix=f"fix or delete line {number}; r4b-deploy render regenerates the API key if it is missing",
            )
        values[key] = value
    return values


def _check_value(key: str, value: str, source: str) -> None:
    if validate.ENV_VALUE.fullmatch(value) is None:
        raise UsageError(
            f"{source}: the value of {key} holds characters an env file cannot carry safely",
            fix=f"use a value of letters, digits and . _ : / , = + @ % - for {key}",
        )


def env_values(existing: Mapping[str, str], hf_token_env: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The env file's contents: the kept (or a new) API key, HF_TOKEN, then any other kept lines."""
    values = {API_KEY_VAR: existing.get(API_KEY_VAR) or generate_api_key()}
    token = environ.get(hf_token_env)
    if token:
        _check_value(HF_TOKEN_VAR, token, f"${hf_token_env}")
        values[HF_TOKEN_VAR] = token
    elif existing.get(HF_TOKEN_VAR):
        values[HF_TOKEN_VAR] = existing[HF_TOKEN_VAR]
    for key, value in existing.items():
        values.setdefault(key, value)
    for key, value in values.items():
        _check_value(key, value, ENV_FILE_NAME)
    return values


def render_env_text(values: Mapping[str, str]) -> str:
    from r4b_deploy.render.jinja import render_template

    return render_template("r4b.env.j2", values=dict(values))


def read_existing_env(path: Path) -> dict[str, str]:
    """The current env file's values, or {} when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", fix=f"check the permissions of {path}") from exc
    return parse_env_text(text, str(path))


def read_env_file(out_dir: Path | str) -> dict[str, str]:
    """The deployment's secrets, for the runtimes. Refuses a file others can read."""
    path = Path(out_dir) / ENV_FILE_NAME
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise UsageError(
            f"{path} does not exist", fix=f"render the deployment first: r4b-deploy render --out {out_dir}"
        ) from None
    if mode & 0o077:
        raise UsageError(f"{path} is readable by others (mode {mode:04o})", fix=f"chmod 600 {path}")
    return read_existing_env(path)
