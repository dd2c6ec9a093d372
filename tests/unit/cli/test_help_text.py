"""Every command's --help as users read it: the README's tables are checked against it by hand,
so it must not print an unbounded range as `[x<=None]`."""

from __future__ import annotations

import pytest

from r4b_deploy.cli.main import cli, main
from r4b_deploy.errors import ExitCode

COMMANDS = ["gpus", "plan", "render", "up", "down", "status", "logs", "smoke", "bench", "doctor"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_no_none_bound(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "--help" in text and "None" not in text, [line for line in text.splitlines() if "None" in line]


def test_every_command_is_covered() -> None:
    assert set(cli.list_commands(None)) - {"engine"} == set(COMMANDS)  # type: ignore[arg-type]
