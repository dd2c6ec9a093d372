"""Entry point. Registers commands by name and imports each module only when it runs,
so `r4b-deploy plan` does not pay for docker, jinja2 or rich it never uses."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping

import click

from r4b_deploy import __version__
from r4b_deploy.errors import ExitCode, R4BError, Terminated

DEBUG_ENV = "R4B_DEBUG"
_TRUTHY = ("1", "true", "yes", "on")


def debug_from_env(environ: Mapping[str, str]) -> bool:
    """`R4B_DEBUG=1` (or true/yes/on, any case) acts as `--debug`; unset, empty, 0, false do not."""
    return environ.get(DEBUG_ENV, "").strip().lower() in _TRUTHY


# command name -> (module under r4b_deploy.cli, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "gpus": ("gpus", "Measure the GPUs through NVML and print the inventory."),
    "plan": ("plan", "Pick a profile and work out the vLLM settings from the memory arithmetic."),
    "render": ("render", "Write the deployment folder: Dockerfile, compose file, env file, manifest."),
    "up": ("up", "Plan, render, build, launch, wait for health, smoke and bench, in one go."),
    "down": ("down", "Stop and remove the deployment's container or process (idempotent)."),
    "status": ("status", "Show the deployment's state, health, URL and uptime."),
    "logs": ("logs", "Print (or follow) the deployment's server log."),
    "smoke": ("smoke", "Check a running R-4B endpoint: text, image, each thinking mode."),
    "bench": ("bench", "Measure throughput and latency of a running R-4B endpoint."),
    "doctor": ("doctor", "Check the host: driver, CUDA, Docker, NVIDIA runtime, disk, shm, port."),
    "engine": ("engine", "Install, start or stop the toolkit's own Docker engine; make the local base image."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"r4b_deploy.cli.{entry[0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table above, so `--help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, helptext) for name, (_, helptext) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="r4b-deploy")
@click.option("--debug", is_flag=True, help=f"Show tracebacks on errors (or set {DEBUG_ENV}=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """r4b-deploy: from a GPU machine to a checked, measured R-4B endpoint."""
    ctx.obj = {"debug": debug or debug_from_env(os.environ)}


def _echo_error(message: str, fix: str | None = None, details: str | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    if details:
        click.echo(details.rstrip("\n"), err=True)
    if fix:
        click.echo(f"  To fix: {fix}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every failure to one line and a distinct exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or debug_from_env(os.environ)
    try:
        cli.main(args=args, prog_name="r4b-deploy", standalone_mode=False)
    except R4BError as exc:
        if debug:
            raise
        _echo_error(exc.message, exc.fix, exc.details)
        return int(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns a KeyboardInterrupt into Abort; SIGTERM's Terminated keeps its own code.
        if isinstance(exc.__cause__, Terminated):
            click.echo("terminated", err=True)
            return int(ExitCode.TERMINATED)
        click.echo("aborted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        # Bad options and values: click's message, our usage exit code.
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        _echo_error(exc.format_message())
        return int(ExitCode.USAGE)
    except Terminated:
        click.echo("terminated", err=True)
        return int(ExitCode.TERMINATED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            raise
        _echo_error(
            f"internal error: {type(exc).__name__}: {exc}",
            "rerun with --debug for the traceback and report it",
        )
        return int(ExitCode.INTERNAL)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
