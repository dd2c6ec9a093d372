"""The registry of running process-runtime servers: one entry per deployment folder, under the
user's state folder, keyed by the folder's identity.

The docker runtime finds its containers by label even after their folder is deleted; this is the
process runtime's equivalent, so `down --dir GONE --runtime process` can still stop a server
whose folder (and pidfile) is gone. An entry is the pidfile's record (`ServerRecord`, with the
same proof: start time and command line) and is written and removed with it.
"""

from __future__ import annotations

from pathlib import Path

from r4b_deploy.launch.server_process import ServerRecord, read_record, write_record
from r4b_deploy.launch.user_state import folder_key, state_subdir
from r4b_deploy.paths import state_dir

SERVERS_DIR_NAME = "servers"


def entry_path(folder: Path | str) -> Path:
    """Where the folder's entry lives; reading creates nothing (a read-only home still has `status`)."""
    return state_dir() / SERVERS_DIR_NAME / f"{folder_key(folder)}.json"


def register(folder: Path, record: ServerRecord) -> None:
    state_subdir(SERVERS_DIR_NAME)  # created private, or EnvironmentProblem saying how to fix it
    write_record(entry_path(folder), record)


def registered(folder: Path | str) -> ServerRecord | None:
    """The folder's entry, or None (none, or one for another folder: a hash collision is not ours)."""
    record = read_record(entry_path(folder))
    if record is None or record.deployment_dir is None:
        return None
    from r4b_deploy.deployment import folder_identity

    return record if record.deployment_dir == folder_identity(folder) else None


def unregister(folder: Path | str) -> None:
    entry_path(folder).unlink(missing_ok=True)
