"""What the CLI tells a user about engines and compose: `render` suggests compose v2 first, and
`engine` refuses, with the fix, what needs root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r4b_deploy.cli.main import main
from r4b_deploy.errors import ExitCode


def test_render_suggests_docker_compose_v2_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    code = main(["render", "--gpu", "L4", "--out", str(out), "--hf-cache", str(tmp_path / "hf")])
    stdout = capsys.readouterr().out
    assert code == ExitCode.OK
    v2 = stdout.index("docker compose -p ")
    assert "docker-compose" in stdout[v2:], "compose v1 is still named, after v2"
    assert "docker-compose -p" not in stdout[:v2]
    header = (out / "docker-compose.yml").read_text().splitlines()[1]
    assert header.startswith("#   docker compose -p ")


def test_engine_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", "--help"]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "install start base-image" in text and "engine env" in text


def test_engine_refuses_machine_changes_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["engine", "install", "start"]) == ExitCode.ENVIRONMENT
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo r4b-deploy engine install start" in err


def test_engine_env_prints_the_export_line(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", "env"]) == ExitCode.OK
    assert capfd.readouterr().out.startswith("export DOCKER_HOST=unix://")


def test_engine_rejects_an_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", "launch"]) == ExitCode.USAGE
