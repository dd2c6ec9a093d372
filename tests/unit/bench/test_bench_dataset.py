"""`bench --dataset FILE.jsonl`: the user's requests, checked up front (a bad line is exit 4 naming
it), images read from paths into data URLs, replayed in file order with their own max_tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r4b_deploy.bench.dataset import IMAGE_MAX_BYTES, load_dataset
from r4b_deploy.bench.workload import WorkloadSpec, prepare_requests
from r4b_deploy.cli.main import main
from r4b_deploy.client.images import png_data_url, solid_png
from r4b_deploy.errors import UsageError

URL = ["--url", "http://127.0.0.1:9"]  # never contacted: every case fails before any request


def _write(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def test_lines_are_messages_or_objects_with_max_tokens(tmp_path: Path) -> None:
    png = tmp_path / "pic.png"
    png.write_bytes(solid_png(8, 8, (1, 2, 3)))
    path = _write(
        tmp_path,
        [{"role": "user", "content": "hello"}],
        "",
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "pic.png"}}]},
            ],
            "max_tokens": 7,
        },
    )
    first, second = load_dataset(path)
    assert (first.line, first.max_tokens, first.images) == (1, None, 0)
    assert (second.line, second.max_tokens, second.images) == (3, 7, 1)
    url = second.messages[1]["content"][0]["image_url"]["url"]
    assert url == png_data_url(png.read_bytes())  # a relative path: next to the dataset, as a data URL


def test_replay_keeps_file_order_modes_in_turn_and_each_lines_max_tokens(tmp_path: Path) -> None:
    inline = png_data_url(solid_png(4, 4, (9, 9, 9)))
    path = _write(
        tmp_path,
        [{"role": "user", "content": "one"}],
        {
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": inline}}]}],
            "max_tokens": 5,
        },
    )
    spec = WorkloadSpec(model="r4b", mode="mix", max_tokens=32, dataset=load_dataset(path))
    pool = prepare_requests(spec)
    bodies = [json.loads(p.body) for p in pool]
    assert len(pool) == 6  # two lines, three modes: each line once per mode, so mix keeps alternating
    assert [p.mode for p in pool] == ["auto", "long", "short"] * 2
    assert [p.workload for p in pool] == ["text", "image"] * 3
    assert [b["max_tokens"] for b in bodies] == [32, 5] * 3
    assert bodies[0]["messages"] == [{"role": "user", "content": "one"}]
    assert bodies[0]["stream"] is True and bodies[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ("[]", "no messages"),
        ('{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens must be a positive"),
        ('{"messages": [{"role": "user", "content": "x"}], "temperature": 1}', "unknown key(s) temperature"),
        ('[{"role": "robot", "content": "x"}]', "each message needs a role"),
        (
            '[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]',
            "the last message is the assistant's",
        ),
        (
            '[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]',
            "is remote (the benchmark downloads nothing)",
        ),
        (
            '[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "missing.png"}}]}]',
            "cannot read image",
        ),
        (
            '[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "notes.txt"}}]}]',
            "is not an image",
        ),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    path = _write(tmp_path, [{"role": "user", "content": "fine"}], line)
    with pytest.raises(UsageError, match=r"requests\.jsonl:2: ") as exc:
        load_dataset(path)
    assert message in str(exc.value)


def test_an_image_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(IMAGE_MAX_BYTES + 1)  # sparse: no real bytes written
    path = _write(tmp_path, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(big)}}]}])
    with pytest.raises(UsageError, match=r"requests\.jsonl:1: image .* is \d+ bytes"):
        load_dataset(path)


def test_an_empty_or_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="holds no requests"):
        load_dataset(_write(tmp_path, ""))
    with pytest.raises(UsageError, match="cannot read --dataset"):
        load_dataset(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompts", "easy"], "--dataset and --prompts exclude each other"),
        (["--input-len", "64"], "--input-len sizes the synthetic text prompts"),
        ([], "requests.jsonl:2: not JSON"),
    ],
)
def test_the_cli_checks_the_dataset_before_any_request(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    path = _write(tmp_path, [{"role": "user", "content": "ok"}], "{oops")
    rc = main(["bench", *URL, "--no-progress", "--dataset", str(path), *extra])
    err = capsys.readouterr().err
    assert rc == 4, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input-len", "64", "--prompt-words", "10"], "--input-len and --prompt-words exclude each other"),
        (["--input-len", "64", "--workload", "image"], "--input-len sizes the synthetic text prompts"),
        (["--output-len", "16", "--max-tokens", "32"], "--output-len and --max-tokens name different sizes"),
        (["--prompts", "medium"], "'medium' is not one of easy, hard"),
    ],
)
def test_prompt_size_options_that_conflict_are_usage_errors(capsys, args: list[str], message: str) -> None:
    rc = main(["bench", *URL, "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 4, err
    assert message in err
