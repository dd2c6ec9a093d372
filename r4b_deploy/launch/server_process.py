"""A server process detached from its caller and recorded in a pidfile: start it, tell whether it
is still the process we started, stop its whole process group (its log: `launch/log_files.py`).

The pidfile holds the pid, the kernel's start time of that pid and the command, so nothing is
signalled without proof that it is the server this deployment started (`check_record`): a
recycled pid is not the server, and a record that cannot prove its process (no start time, another
command line) is refused with what was found, never killed. The server runs in a session of its
own, so stopping it stops its children (vLLM's engine processes) too, and engine processes a
crashed server left behind are found by that group. No secret is ever in the pidfile: argv never
carries one. Without /proc (macOS) only the pid's existence can be checked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from r4b_deploy.atomic import write_text_atomic
from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch.base import StopResult

PREVIOUS_LOG_SUFFIX = ".1"
LOCK_SUFFIX = ".lock"
RECORD_FILE_MODE = 0o644  # pid, start time and URL: `status` run by another user reads it too
STOP_TIMEOUT_S = 30.0  # SIGTERM grace before SIGKILL; vLLM on CPU stops in ~2 s
KILL_WAIT_S = 5.0
REAP_WAIT_S = 5.0  # after a stop, how long exited processes may wait to be collected (init takes ~1 s here)
POLL_S = 0.2
_PROC = Path("/proc")


class ServerRecord(BaseModel):
    """What `server.pid` holds. No secrets: the command is argv, and argv never carries the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int
    start_ticks: int | None  # /proc/<pid>/stat field 22; None where /proc is missing
    started_at: datetime
    url: str
    served_model_name: str
    command: list[str]
    deployment_dir: Path | None = None  # the folder's identity (the registry's entries outlive the folder)


Verdict = Literal["ours", "leftovers", "gone", "unproven"]


class ProcessCheck(BaseModel):
    """What a record's pid (and its process group) is now.

    ours: the server, proven by start time and command line. leftovers: the server is gone but
    processes it started remain in its group. gone: nothing of it remains (a recycled pid is
    someone else's, and gone for us). unproven: something is there that the record cannot prove
    is ours: refuse to touch it. `found` says what, for messages.
    """

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    found: str = ""
    group: list[int] = []  # pids in the server's process group (leftovers, unproven)


# ---------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) from /proc, or None if no such process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def process_start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1]


def _same_command(actual: list[str], recorded: list[str]) -> bool:
    """The kernel puts a script's interpreter before it (`python /venv/bin/vllm serve …`): the
    recorded command must be the whole command line or its tail."""
    return bool(recorded) and actual[-len(recorded) :] == recorded


def _group_members(pgid: int) -> list[tuple[int, int]]:
    """(pid, start ticks) of every process whose process group is `pgid`."""
    members = []
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        try:
            raw = (_PROC / entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append((int(entry), int(fields[19])))
    return members


def check_record(record: ServerRecord) -> ProcessCheck:
    """Is the record's pid the server it started, what it left behind, or something unproven?"""
    if not _PROC.is_dir():
        return _check_without_proc(record)
    stat = _proc_stat(record.pid)
    if stat is not None and stat[0] in ("Z", "X") and stat[1] == record.start_ticks:
        _reap(record.pid)  # our own exited server (start time matched): collect it, then look at its group
        stat = _proc_stat(record.pid)
    if stat is not None and stat[0] not in ("Z", "X"):
        if record.start_ticks is None:
            return ProcessCheck(verdict="unproven", found=_describe(record.pid) + "; the record has no start time")
        if stat[1] != record.start_ticks:
            # Recycled: a pid still used as a process group id is never reused, so no group of ours remains.
            return ProcessCheck(verdict="gone")
        actual = _cmdline(record.pid)
        # Empty while the process exits (its memory is gone before it is a zombie): the pid and its
        # start time already say it is ours; only another command line disproves it.
        if actual and not _same_command(actual, record.command):
            return ProcessCheck(
                verdict="unproven", found=_describe(record.pid) + ", not the recorded command, started at the same time"
            )
        return ProcessCheck(verdict="ours")
    members = _group_members(record.pid)
    if not members:
        return ProcessCheck(verdict="gone")
    pids = [pid for pid, _ in members]
    # Every process the server started began after it; without its start time nothing proves that.
    if record.start_ticks is None or any(ticks < record.start_ticks for _, ticks in members):
        return ProcessCheck(
            verdict="unproven",
            found=f"process group {record.pid} holds {_describe(pids[0])} and {len(pids) - 1} more, "
            "not provably started by the server",
            group=pids,
        )
    return ProcessCheck(verdict="leftovers", found=f"{len(pids)} process(es) the server left behind", group=pids)


def _check_without_proc(record: ServerRecord) -> ProcessCheck:
    """No /proc (macOS): the pid's and the group's existence is all there is to go on."""
    try:
        os.kill(record.pid, 0)
        return ProcessCheck(verdict="ours")
    except ProcessLookupError:
        pass
    except PermissionError:
        return ProcessCheck(verdict="ours")
    return ProcessCheck(verdict="leftovers") if _group_alive(record.pid) else ProcessCheck(verdict="gone")


def _describe(pid: int) -> str:
    """`pid 123 (sleep 600)`: what a refusal message shows of a process."""
    command = " ".join(_cmdline(pid) or [])
    return f"pid {pid} ({command[:80] or 'no command line'})"


def pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Is `pid` still the process that started at `start_ticks`? A recycled pid is not; a zombie is
    gone (and reaped). A None start time matches any start time: callers that act on the answer
    use `check_record`, which demands one."""
    if _PROC.is_dir():
        stat = _proc_stat(pid)
        if stat is None or (start_ticks is not None and stat[1] != start_ticks):
            return False
        if stat[0] in ("Z", "X"):
            _reap(pid)
            return False
        return True
    try:  # no /proc (macOS): existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Does any process of the group still run (zombies do not)?"""
    if _PROC.is_dir():
        return bool(_group_members(pgid))
    return _group_exists(pgid)


@contextlib.contextmanager
def folder_lock(pid_path: Path) -> Iterator[None]:
    import fcntl

    with open(pid_path.with_name(pid_path.name + LOCK_SUFFIX), "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def read_record(pid_path: Path) -> ServerRecord | None:
    try:
        return ServerRecord.model_validate_json(pid_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, ValueError):
        return None  # a torn or foreign file: treat as no server, start() rewrites it


def record_alive(record: ServerRecord) -> bool:
    """Is the record's server running (proven: start time and command line)?"""
    return check_record(record).verdict == "ours"


def refusal(record: ServerRecord, check: ProcessCheck, source: Path) -> EnvironmentProblem:
    """The error for a record whose process cannot be proven to be the server: say what was found."""
    return EnvironmentProblem(
        f"{source} names {check.found}; nothing proves it is the server this deployment started, "
        "so r4b-deploy leaves it alone",
        fix=f"if it is the server, stop it yourself (`kill -TERM -- -{record.pid}`), then delete {source}; "
        f"if not, just delete {source}",
    )


def write_record(pid_path: Path, record: ServerRecord) -> None:
    write_text_atomic(pid_path, record.model_dump_json(indent=2) + "\n", mode=RECORD_FILE_MODE)


def start_vllm_process(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    pid_path: Path,
    url: str,
    served_model_name: str,
    deployment_dir: Path | None = None,
) -> ServerRecord:
    """Start `command` detached (own session), output to `log_path`, and record it in `pid_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists():
        log_path.replace(log_path.with_name(log_path.name + PREVIOUS_LOG_SUFFIX))
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=pid_path.parent,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchError(
                f"cannot run {command[0]}: {exc.strerror}", fix="check that vLLM is installed and executable"
            ) from exc
    record = ServerRecord(
        pid=proc.pid,
        start_ticks=process_start_ticks(proc.pid),
        started_at=datetime.now(timezone.utc),
        url=url,
        served_model_name=served_model_name,
        command=command,
        deployment_dir=deployment_dir,
    )
    write_record(pid_path, record)
    return record


def stop_recorded(pid_path: Path, timeout_s: float = STOP_TIMEOUT_S) -> StopResult:
    """SIGTERM the recorded server's process group, SIGKILL after `timeout_s`, drop the record file.

    Idempotent: no record, or a server already gone, is `stopped=False`. Engine processes a crashed
    server left in its group are stopped too. A record that cannot prove its process is the
    server raises EnvironmentProblem (`refusal`) and is kept: nothing is signalled.
    """
    record = read_record(pid_path)
    if record is None:
        pid_path.unlink(missing_ok=True)
        return StopResult(runtime="process", stopped=False)
    result = stop_checked(record, check_record(record), pid_path, timeout_s)
    pid_path.unlink(missing_ok=True)
    return result


def stop_checked(record: ServerRecord, check: ProcessCheck, source: Path, timeout_s: float) -> StopResult:
    """Stop what `check` found of `record` (`source` names the record file in a refusal)."""
    if check.verdict == "unproven":
        raise refusal(record, check, source)
    if check.verdict == "gone":
        return StopResult(runtime="process", stopped=False)
    _signal_group(record.pid, signal.SIGTERM)  # the group id is the leader's pid (own session)
    what = f"pid {record.pid}"
    if check.verdict == "leftovers":
        what = f"pids {', '.join(map(str, check.group))} (left by pid {record.pid})"
    if _wait_group_gone(record, timeout_s):
        return StopResult(runtime="process", stopped=True, removed=[what])
    _signal_group(record.pid, signal.SIGKILL)
    _wait_group_gone(record, KILL_WAIT_S)
    return StopResult(runtime="process", stopped=True, removed=[f"{what} (killed after {timeout_s:.0f} s)"])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(record: ServerRecord, timeout_s: float) -> bool:
    """Wait until no process of the group runs (False after `timeout_s`); then, briefly, until its
    exited processes are collected too, so the group id is free when the stop returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid_alive(record.pid, record.start_ticks)  # reaps the leader if it is our zombie
        if not _group_alive(record.pid):
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    # Orphans are collected by init, our leader by us; a zombie whose parent never collects it
    # (not ours to reap) must not hold the stop for its whole grace period.
    reap_deadline = time.monotonic() + REAP_WAIT_S
    while _group_exists(record.pid) and time.monotonic() < reap_deadline:
        pid_alive(record.pid, record.start_ticks)
        time.sleep(POLL_S)
    return True


def _group_exists(pgid: int) -> bool:
    """Any process in the group, zombies included (what `kill -0 -PGID` sees)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
