"""Where the toolkit's data folders live, in a source checkout and in an installed wheel."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    # The wheel carries templates/ and profiles/ under r4b_deploy/_data; a checkout has them at the root.
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"r4b-deploy data folder {name!r} not found; reinstall the package")


def templates_dir() -> Path:
    return _data_dir("templates")


def profiles_dir() -> Path:
    return _data_dir("profiles")


def cache_dir() -> Path:
    """Big reusable downloads (vLLM CPU venv, wheelhouse, tiny model): $R4B_CACHE_DIR or ~/.cache/r4b-deploy."""
    root = os.environ.get("R4B_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "r4b-deploy"
    )
    return Path(root)


def state_dir() -> Path:
    """Small per-user state that must outlive a deployment folder (locks, the registry of running
    servers): $XDG_STATE_HOME/r4b-deploy or ~/.local/state/r4b-deploy."""
    root = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(root) / "r4b-deploy"
