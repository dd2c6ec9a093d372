"""`up` shares its options with `render` and `bench` (one definition each) and stops on SIGTERM as on Ctrl-C."""

from __future__ import annotations

import os
import signal
import time

import click
import pytest

from r4b_deploy.cli.main import cli
from r4b_deploy.errors import Terminated


def _params(name: str) -> dict[str, click.Parameter]:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    return {p.name: p for p in command.params if p.name is not None}


def test_up_takes_every_render_option_and_the_bench_gates() -> None:
    from r4b_deploy.cli.render_kubernetes import RENDER_ONLY_PARAMS

    up, render, bench = _params("up"), _params("render"), _params("bench")
    own_to_render = {"out_dir", "force", "as_json", *RENDER_ONLY_PARAMS}  # --target kubernetes is render's
    for name, param in render.items():
        if name in own_to_render:
            continue
        assert name in up, name
        assert up[name].opts == param.opts and up[name].help == param.help, name
    for name in ("slos", "max_error_rate"):
        assert up[name].opts == bench[name].opts and up[name].default == bench[name].default


def test_sigterm_raises_terminated_inside_up_and_the_handlers_come_back() -> None:
    from r4b_deploy import pipeline_events
    from r4b_deploy.cli.up import _interrupt_flag

    # The defaults, whatever this test run inherited (a CI job started in the background of a
    # non-interactive shell gets SIGINT ignored, which `up` rightly leaves alone).
    inherited = signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        with pytest.raises(Terminated), _interrupt_flag():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises as soon as the interpreter sees the signal
            raise AssertionError("SIGTERM did not stop the block")
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
        assert not pipeline_events._interrupt_requested.is_set()  # cleared on the way out
    finally:
        signal.signal(signal.SIGTERM, inherited[0])
        signal.signal(signal.SIGINT, inherited[1])


def test_an_inherited_ignored_sigterm_is_left_alone() -> None:
    from r4b_deploy.cli.up import _interrupt_flag

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with _interrupt_flag():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_every_render_option_reaches_render_options() -> None:
    """An option added to render's list but not to RENDER_KEYS would be dropped on the way."""
    from r4b_deploy.cli.options import PLANNING_KEYS
    from r4b_deploy.cli.render import RENDER_KEYS
    from r4b_deploy.cli.render_kubernetes import RENDER_ONLY_PARAMS

    own = {"out_dir", "force", "as_json", *PLANNING_KEYS, *RENDER_ONLY_PARAMS}
    assert set(_params("render")) - own == set(RENDER_KEYS)
