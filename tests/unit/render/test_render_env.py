"""The env file's format: what compose v1 and v2 both read the same way, and nothing else."""

from __future__ import annotations

import pytest

from r4b_deploy.errors import UsageError
from r4b_deploy.render.env import API_KEY_VAR, env_values, generate_api_key, parse_env_text, render_env_text


def test_render_then_parse_round_trips() -> None:
    values = {API_KEY_VAR: generate_api_key(), "HF_TOKEN": "hf_abc", "EXTRA": "1"}
    text = render_env_text(values)
    assert parse_env_text(text) == values
    assert text.startswith("#")  # a header saying what the file is
    assert text.endswith("\n")


def test_api_key_is_url_safe_and_long() -> None:
    keys = {generate_api_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) >= 40
        assert key.replace("-", "").replace("_", "").isalnum()


def test_existing_key_is_kept_and_missing_one_generated() -> None:
    assert env_values({API_KEY_VAR: "kept-key"}, "HF_TOKEN", {})[API_KEY_VAR] == "kept-key"
    assert env_values({}, "HF_TOKEN", {})[API_KEY_VAR]


def test_order_is_key_token_then_kept_lines() -> None:
    values = env_values({"OTHER": "x", API_KEY_VAR: "k"}, "TOK", {"TOK": "hf_1"})
    assert list(values) == [API_KEY_VAR, "HF_TOKEN", "OTHER"]


def test_malformed_line_is_refused_without_echoing_it() -> None:
    with pytest.raises(UsageError, match="line 2 is not KEY=VALUE") as caught:
        parse_env_text("A=1\nsecret-value-without-key\n")
    assert "secret-value" not in str(caught.value)


@pytest.mark.parametrize("value", ['a"b', "a b", "a$b", "a`b", "a'b", "a\\b"])
def test_unsafe_kept_value_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match="cannot carry safely") as caught:
        env_values({"X": value}, "HF_TOKEN", {})
    assert value not in str(caught.value)
