"""The deployment folder contract: one identity per folder, whichever path (link or not) names it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r4b_deploy.deployment import (
    LABEL_DIR,
    folder_identity,
    load_deployment,
    project_name_for,
    read_env_file,
)
from r4b_deploy.errors import UsageError
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """(`link/deploy`, `real/deploy`): one folder, two names; `link` is a symbolic link to `real`."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    return tmp_path / "link" / "deploy", tmp_path / "real" / "deploy"


def test_folder_identity_resolves_links_dots_and_home(
    tmp_path: Path, linked: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    via_link, real = linked
    assert folder_identity(via_link) == folder_identity(real) == real
    assert folder_identity(str(via_link)) == real
    assert folder_identity(tmp_path / "link" / ".." / "real" / "deploy") == real
    monkeypatch.setenv("HOME", str(tmp_path / "link"))
    assert folder_identity("~/deploy") == real
    monkeypatch.chdir(tmp_path / "link")
    assert folder_identity("deploy") == real  # relative to the working folder, itself resolved
    assert folder_identity(tmp_path / "not-yet" / "deploy") == tmp_path / "not-yet" / "deploy"


def test_a_folder_rendered_through_a_link_is_one_deployment(linked: tuple[Path, Path]) -> None:
    """Bug: render recorded `link/deploy` while the CLI looked up `real/deploy`: another container
    name, and load_deployment refused the folder as "moved or copied"."""
    via_link, real = linked
    deployment = write_deployment(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), via_link)
    assert deployment.dir == real
    assert deployment.env_file == real / "r4b.env"
    assert deployment.container.labels[LABEL_DIR] == str(real)
    assert deployment.project_name == deployment.container.name == project_name_for(via_link) == project_name_for(real)
    assert load_deployment(via_link) == load_deployment(real) == deployment
    assert read_env_file(via_link) == read_env_file(real)


def test_a_moved_folder_is_still_refused(tmp_path: Path) -> None:
    write_deployment(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), tmp_path / "a")
    os.rename(tmp_path / "a", tmp_path / "b")
    with pytest.raises(UsageError, match="moved or copied"):
        load_deployment(tmp_path / "b")
