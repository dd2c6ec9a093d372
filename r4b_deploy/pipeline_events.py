"""What `up` tells its caller as it goes (`UpEvent`s, stage timings), and the interrupt flag its
waits re-check. Shared by the launch steps (`pipeline.py`) and the checks (`pipeline_checks.py`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from r4b_deploy.bench.runner import BenchProgress
    from r4b_deploy.checks.smoke import CheckResult
    from r4b_deploy.launch.base import BuildLine

Stage = Literal["plan", "wheelhouse", "render", "build", "start", "health", "smoke", "bench", "report"]


@dataclass(frozen=True)
class UpEvent:
    """What `run_up` reports as it goes, for a live display. Library code never prints.

    kind: "start"/"done" of a stage (done carries `elapsed_s`), "line" (build output; `data` is a
    BuildLine), "tick" (health wait: `elapsed_s`, `data` the log tail), "progress" (`data` a
    BenchProgress or a smoke CheckResult), "info" (a one-line note in `message`).
    """

    stage: Stage
    kind: Literal["start", "done", "line", "tick", "progress", "info"]
    message: str = ""
    elapsed_s: float | None = None
    data: BuildLine | BenchProgress | CheckResult | str | None = None


EventCallback = Callable[[UpEvent], None]


# Set by the CLI's SIGINT/SIGTERM handler. A KeyboardInterrupt that lands inside a destructor (an
# HTTP response closed by the garbage collector, say) is printed and swallowed by Python; the long
# waits re-check this flag so one Ctrl-C always stops `up` and cleans up.
_interrupt_requested = threading.Event()
_interrupt_kind: list[type[KeyboardInterrupt]] = [KeyboardInterrupt]  # Terminated for SIGTERM


def request_interrupt(kind: type[KeyboardInterrupt] = KeyboardInterrupt) -> None:
    _interrupt_kind[0] = kind
    _interrupt_requested.set()


def clear_interrupt() -> None:
    _interrupt_requested.clear()
    _interrupt_kind[0] = KeyboardInterrupt


def raise_if_interrupted() -> None:
    if _interrupt_requested.is_set():
        raise _interrupt_kind[0]


def emit(on_event: EventCallback | None, event: UpEvent) -> None:
    """Hand `event` to the caller; every event is also a point where a requested interrupt stops `up`."""
    raise_if_interrupted()
    if on_event is not None:
        on_event(event)


class Stages:
    """Times each stage and reports its start and end."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.on_event = on_event
        self.timings_s: dict[str, float] = {}
        self.started = time.monotonic()

    @contextlib.contextmanager
    def stage(self, name: Stage, message: str = "") -> Iterator[None]:
        emit(self.on_event, UpEvent(name, "start", message))
        t0 = time.monotonic()
        yield
        self.timings_s[name] = round(time.monotonic() - t0, 2)
        emit(self.on_event, UpEvent(name, "done", message, elapsed_s=self.timings_s[name]))

    def since_start_s(self) -> float:
        return round(time.monotonic() - self.started, 2)
