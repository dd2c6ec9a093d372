"""Editing `vllm serve` argument lists: both the `--flag value` and the `--flag=value` spellings."""

from __future__ import annotations

from r4b_deploy.render.args import compact_json_arg, drop_flag, flag_names, with_flag, with_model


def test_with_model_replaces_the_positional_or_the_flag() -> None:
    assert with_model(["org/a", "--x", "1"], "/m") == ["/m", "--x", "1"]
    assert with_model(["--model", "org/a", "--x", "1"], "/m") == ["/m", "--x", "1"]
    assert with_model(["--model=org/a", "--x"], "/m") == ["/m", "--x"]
    assert with_model(["--x", "1"], "/m") == ["/m", "--x", "1"]


def test_with_flag_sets_in_place_or_after_the_model() -> None:
    assert with_flag(["m", "--served-model-name", "a", "--x"], "--served-model-name", "b") == [
        "m",
        "--served-model-name",
        "b",
        "--x",
    ]
    assert with_flag(["m", "--served-model-name=a"], "--served-model-name", "b") == ["m", "--served-model-name=b"]
    assert with_flag(["m", "--x"], "--served-model-name", "b") == ["m", "--served-model-name", "b", "--x"]


def test_drop_flag_removes_both_spellings_only() -> None:
    args = ["m", "--host", "0.0.0.0", "--port=8000", "--hostname-x", "y", "--port", "1"]
    assert drop_flag(drop_flag(args, "--host"), "--port") == ["m", "--hostname-x", "y"]


def test_flag_names() -> None:
    assert flag_names(["m", "--a", "1", "--b=2", "-c"]) == {"--a", "--b"}


def test_compact_json_arg() -> None:
    assert compact_json_arg('{"image": 2, "video": 0}') == '{"image":2,"video":0}'
    assert compact_json_arg("{not json") == "{not json"
    assert compact_json_arg("plain") == "plain"
