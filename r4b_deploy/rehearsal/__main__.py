"""`python -m r4b_deploy.rehearsal setup [--wheelhouse]`: pre-warm the rehearsal cache (CI, a new laptop).

An edge like the CLI, so it prints: what it built or found, and how long it took.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from r4b_deploy.errors import R4BError
from r4b_deploy.rehearsal.pip_index import NO_INDEX, TORCH_INDEX_ENV, TORCH_INDEX_OPTION


def _say(message: str) -> None:
    print(f"rehearsal: {message}", flush=True)


def _timed(name: str, step: Callable[[], Path]) -> Path:
    started = time.monotonic()
    path = step()
    _say(f"{name}: {path} ({time.monotonic() - started:.1f} s)")
    return path


def setup(wheelhouse: bool, torch_index_url: str | None = None) -> None:
    """Everything a rehearsal needs, in order; each step is a no-op when its cache entry is complete.
    With the wheelhouse downloaded first, the venv installs from it offline."""
    from r4b_deploy.rehearsal.vllm_cpu import ensure_tiny_model, ensure_venv, ensure_wheelhouse

    if wheelhouse:
        _timed("wheelhouse", lambda: ensure_wheelhouse(on_progress=_say, torch_index_url=torch_index_url))
    venv = _timed("vLLM CPU venv", lambda: ensure_venv(on_progress=_say, torch_index_url=torch_index_url))
    _timed("tiny R-4B model", lambda: ensure_tiny_model(venv, on_progress=_say))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r4b_deploy.rehearsal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    setup_parser = sub.add_parser("setup", help="build (or find) the CPU venv and the tiny model in the cache")
    setup_parser.add_argument(
        "--wheelhouse", action="store_true", help="also download the wheelhouse (Docker rehearsal, offline installs)"
    )
    setup_parser.add_argument(
        TORCH_INDEX_OPTION,
        metavar="URL",
        default=None,
        help=f"where pip finds torch's CPU build, as an extra index beside pip's own configuration "
        f"(default: ${TORCH_INDEX_ENV}, else profiles/vllm.yaml rehearsal.torch_index_url); "
        f"'{NO_INDEX}': no index, pip's find-links only",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            setup(wheelhouse=args.wheelhouse, torch_index_url=args.torch_index_url)
    except R4BError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.details:
            print(exc.details, file=sys.stderr)
        if exc.fix:
            print(f"  To fix: {exc.fix}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
