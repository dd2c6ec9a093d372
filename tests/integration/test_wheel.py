"""The wheel carries templates/ and profiles/, and an installed copy plans and renders from any folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the source (no editable state) and install it into a target dir."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(
        REPO_ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "deploy", ".pytest_cache", ".ruff_cache"),
    )
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("r4b_deploy-*.whl")
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    return wheel


def test_wheel_contains_templates_and_profiles(installed_wheel: Path) -> None:
    names = set(zipfile.ZipFile(installed_wheel).namelist())
    for expected in (
        "r4b_deploy/_data/templates/Dockerfile.j2",
        "r4b_deploy/_data/templates/docker-compose.yml.j2",
        "r4b_deploy/_data/profiles/model.yaml",
        "r4b_deploy/_data/profiles/gpus.yaml",
        "r4b_deploy/_data/profiles/tiers/light.yaml",
        "r4b_deploy/_data/profiles/vllm.yaml",
    ):
        assert expected in names, expected


def test_installed_copy_plans_and_renders_from_another_folder(installed_wheel: Path, tmp_path: Path) -> None:
    site = installed_wheel.parent.parent / "site"
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("R4B_DEBUG", None)
    where = subprocess.run(
        [sys.executable, "-c", "import r4b_deploy, r4b_deploy.paths as p; print(r4b_deploy.__file__); "
         "print(p.templates_dir())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(site)) and where[1].startswith(str(site)), where

    plan = subprocess.run(
        [sys.executable, "-m", "r4b_deploy", "plan", "--gpu", "L4", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["profile"] == "light"

    out = tmp_path / "deploy"
    render = subprocess.run(
        [sys.executable, "-m", "r4b_deploy", "render", "--gpu", "L4", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert render.returncode == 0, render.stderr
    assert "FROM nvidia/cuda:12.1.1-devel-ubuntu22.04" in (out / "Dockerfile").read_text()
    assert (out / "r4b.env").stat().st_mode & 0o777 == 0o600


def test_installed_copy_carries_the_engine_helper(installed_wheel: Path, tmp_path: Path) -> None:
    """`r4b-deploy engine` after `pip install`: the helper ships, and uses the toolkit's cache folder."""
    assert "r4b_deploy/engine/docker-engine.sh" in set(zipfile.ZipFile(installed_wheel).namelist())
    site = installed_wheel.parent.parent / "site"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    where = subprocess.run(
        [sys.executable, "-m", "r4b_deploy", "engine", "where"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    lines = dict(line.split("=", 1) for line in where.stdout.splitlines())
    assert lines["data_root"] == f"{tmp_path}/.cache/r4b-deploy/docker-engine/data"
    from r4b_deploy.pins import gpu_pins

    assert lines["base_image"] == gpu_pins().base_image
