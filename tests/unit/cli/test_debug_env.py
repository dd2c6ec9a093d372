"""`R4B_DEBUG` in the environment acts as `--debug` (tracebacks instead of the one-line error)."""

from __future__ import annotations

import pytest

from r4b_deploy.cli.main import debug_from_env, main
from r4b_deploy.errors import ExitCode, UsageError

BAD_PLAN = ["plan", "--gpu", "NO-SUCH-GPU"]


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " 1 "])
def test_a_truthy_r4b_debug_raises_the_error_with_its_traceback(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("R4B_DEBUG", value)
    with pytest.raises(UsageError, match="NO-SUCH-GPU"):
        main(BAD_PLAN)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off", "maybe"])
def test_otherwise_one_line_and_the_exit_code(
    value: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if value is None:
        monkeypatch.delenv("R4B_DEBUG", raising=False)
    else:
        monkeypatch.setenv("R4B_DEBUG", value)
    assert main(BAD_PLAN) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_the_flag_still_works_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R4B_DEBUG", raising=False)
    with pytest.raises(UsageError):
        main(["--debug", *BAD_PLAN])


def test_debug_from_env_reads_only_r4b_debug() -> None:
    assert debug_from_env({"R4B_DEBUG": "yes"}) and not debug_from_env({"DEBUG": "1"})
