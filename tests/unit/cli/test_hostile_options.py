"""Hostile option values end in a usage error (exit 4) with the limit in the message, never in
"internal error" (70) or in a file rendered as given."""

from __future__ import annotations

import math
from pathlib import Path

import click
import pytest

from r4b_deploy.cli.main import main
from r4b_deploy.cli.options import FiniteFloatRange
from r4b_deploy.errors import ExitCode


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e-300", "1e309", "0"])
def test_gpu_memory_utilization_out_of_bounds(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "plan", "--gpu", "L4", "--gpu-memory-utilization", value)
    assert code == ExitCode.USAGE, err
    assert "--gpu-memory-utilization" in err and "internal error" not in err


def test_finite_float_range_refuses_nan_and_inf() -> None:
    kind = FiniteFloatRange(min=0, max=1)
    assert kind.convert("0.5", None, None) == 0.5
    for bad in ("nan", "NaN", "inf", "-inf", "1e999"):
        with pytest.raises(click.BadParameter, match="finite"):
            kind.convert(bad, None, None)
    with pytest.raises(click.BadParameter):
        kind.convert("2", None, None)  # the range still applies
    assert math.isfinite(FiniteFloatRange().convert("-1e308", None, None))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["plan", "--gpu", "L4", "--max-model-len", "1"], "at least 1,501"),
        (["render", "--gpu", "L4", "--out", "d", "--shm-size", "99999999999999999999g"], "at most"),
        (["render", "--gpu", "L4", "--out", "d", "--ulimit", "nofile=99999999999999999999"], "at most"),
        (["render", "--gpu", "L4", "--out", "a" * 300], "longer than"),
        (["render", "--gpu", "L4", "--out", ""], "--out"),
        (["up", "--gpu", "L4", "--out", ""], "--out"),
        (["down", "--dir", ""], "--dir"),
        (["render", "--gpu", "L4", "--out", "d", "--hf-cache", ""], "--hf-cache"),
        (["render", "--gpu", "L4", "--out", "d", "--wheelhouse", ""], "--wheelhouse"),
        (["doctor", "--runtime", "process", "--hf-cache", ""], "--hf-cache"),
        (["smoke", "--deployment", ""], "--deployment"),
    ],
)
def test_absurd_values_are_usage_errors(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, *args)
    assert code == ExitCode.USAGE, err
    assert fragment in err
    assert list(tmp_path.iterdir()) == []  # nothing written, in the current folder least of all


def test_hf_cache_naming_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    regular = tmp_path / "afile"
    regular.write_text("x")
    code, err = run(capsys, "render", "--gpu", "L4", "--out", str(tmp_path / "d"), "--hf-cache", str(regular))
    assert code == ExitCode.USAGE
    assert "--hf-cache" in err and "not a folder" in err


@pytest.mark.parametrize(
    "content",
    ["[" * 10_000 + "]" * 10_000, '{"gpus": [{"index": ' + "9" * 5000 + "}]}", b"\xff\xfe\x00"],
)
def test_hostile_inventory_files(content: str | bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, err = run(capsys, "plan", "--inventory", str(path))
    assert code == ExitCode.USAGE, err
    assert "inventory file" in err


def test_env_file_that_is_not_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "r4b.env"
    path.write_bytes(b"\x96\xff\x00VLLM_API_KEY=x\n")
    code, err = run(capsys, "smoke", "--url", "http://127.0.0.1:9", "--env-file", str(path))
    assert code == ExitCode.USAGE, err
    assert str(path) in err and "internal error" not in err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--hf-token-env", "$(id)"], "--hf-token-env"),
        (["--hf-cache", "/srv/hf\ncache"], "--hf-cache"),
        (["--hf-cache", "/srv/hf cache"], "--hf-cache"),
    ],
)
def test_doctor_refuses_what_render_refuses(args: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "doctor", "--runtime", "process", "--rehearsal", *args)
    assert code == ExitCode.USAGE, err
    assert err.startswith(f"error: {flag}:")


def test_the_printed_compose_command_quotes_the_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import shlex

    out = tmp_path / "dep$HOME"
    code = main(["render", "--rehearsal", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == ExitCode.OK
    line = next(line for line in printed.splitlines() if "docker compose" in line)
    # Quoted for a shell, or pasting it runs compose on /tmp/…/dep/root/docker-compose.yml.
    assert f"-f {shlex.quote(str(out / 'docker-compose.yml'))} up" in line
