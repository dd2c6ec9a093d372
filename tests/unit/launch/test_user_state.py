"""The per-user state folder: the lock that serializes `up`/`down` of one folder, and its keys."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from r4b_deploy.errors import EnvironmentProblem
from r4b_deploy.launch.user_state import deployment_lock, folder_key, lock_path
from r4b_deploy.paths import state_dir


def test_the_state_dir_follows_xdg_and_defaults_to_local_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/x/state")
    assert state_dir() == Path("/x/state/r4b-deploy")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert state_dir() == Path("/home/u/.local/state/r4b-deploy")


def test_a_folder_has_one_key_whatever_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert folder_key(tmp_path / "link") == folder_key(tmp_path / "real") == folder_key(f"{tmp_path}/real/")
    assert folder_key(tmp_path / "other") != folder_key(tmp_path / "real")


def test_the_lock_folder_is_private(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "dep")
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_second_holder_waits_then_gives_up_naming_the_first(tmp_path: Path) -> None:
    told: list[str] = []
    with deployment_lock(tmp_path / "dep", doing="up"):
        started = time.monotonic()
        with (
            pytest.raises(EnvironmentProblem) as info,
            deployment_lock(tmp_path / "dep", doing="down", wait_s=0.5, on_wait=told.append),
        ):
            pass
        waited_s = time.monotonic() - started
    assert 0.5 <= waited_s < 5
    assert f"pid {os.getpid()}, r4b-deploy up" in info.value.message
    assert "gave up waiting after 0.5 s" in info.value.message and "let it finish" in (info.value.fix or "")
    assert len(told) == 1 and "waiting up to" in told[0]
    with deployment_lock(tmp_path / "dep", doing="down", wait_s=0):  # released: taken at once
        pass


def test_a_waiting_holder_gets_the_lock_when_the_first_lets_go(tmp_path: Path) -> None:
    order: list[str] = []
    release = threading.Event()

    def first() -> None:
        with deployment_lock(tmp_path / "dep", doing="up"):
            order.append("first in")
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    while not order:
        time.sleep(0.01)
    threading.Timer(0.3, release.set).start()
    with deployment_lock(tmp_path / "dep", doing="up", wait_s=10):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_other_folders_do_not_wait(tmp_path: Path) -> None:
    with deployment_lock(tmp_path / "a", doing="up"), deployment_lock(tmp_path / "b", doing="up", wait_s=0):
        pass
