"""The toolkit's error classes. Each maps to one exit code and prints as one line plus a fix.

Library code raises these; only the CLI edge turns them into text and an exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, one per class of failure, stable for CI gates."""

    OK = 0
    CHECK_FAILED = 1  # smoke check failed, SLO violated, doctor found a failure
    ENVIRONMENT = 2  # no NVML / driver / GPUs, Docker engine unreachable, port in use, missing runtime
    INFEASIBLE = 3  # the hardware cannot serve the model as asked (shortfall stated)
    USAGE = 4  # bad option, bad value, malformed profile or input file
    LAUNCH_FAILED = 5  # build failed, container exited, health timeout
    INCONCLUSIVE = 6  # a bench gate neither held nor broke beyond noise: more runs would decide it
    INTERNAL = 70  # a bug in r4b-deploy: rerun with --debug and report it
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # SIGTERM: a cancelled CI job, a service manager (128 + SIGTERM)


class R4BError(Exception):
    """Base error: `message` says what went wrong, `fix` says what to do about it."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, fix: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        # Multi-line supporting output (a build step's log, a container's last lines); printed after the message.
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message} To fix: {self.fix}"


class UsageError(R4BError):
    """The user's input is wrong: an option value, a profile file, an inventory file."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A configuration file (profile, model spec, catalog, deployment manifest) is malformed."""


class EnvironmentProblem(R4BError):
    """The machine lacks something the command needs (NVML, a driver, Docker, a free port)."""

    exit_code = ExitCode.ENVIRONMENT


class InfeasibleError(R4BError):
    """The model cannot be served on this hardware with these settings."""

    exit_code = ExitCode.INFEASIBLE


class LaunchError(R4BError):
    """The deployment did not come up: build failure, container exit, health timeout."""

    exit_code = ExitCode.LAUNCH_FAILED


class CheckFailed(R4BError):
    """A smoke check, SLO gate or doctor check failed; the report says which."""

    exit_code = ExitCode.CHECK_FAILED


class GateInconclusive(R4BError):
    """A bench gate's confidence interval straddles its limit: no breach shown, no pass either."""

    exit_code = ExitCode.INCONCLUSIVE


class Terminated(KeyboardInterrupt):
    """SIGTERM during `up`: cleaned up exactly as Ctrl-C is (every `except KeyboardInterrupt`
    applies), then exit code TERMINATED so a CI log tells a cancelled job from a Ctrl-C."""
