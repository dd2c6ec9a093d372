"""Every rendered Dockerfile relies on nothing the real base image lacks.

The real `nvidia/cuda:12.1.1-devel-ubuntu22.04` has no Python and no curl (profiles/base-image.yaml
says what it has, and where that was read). A step that runs `python3`, `pip` or `curl` before the
apt step installs it builds on a kinder stand-in and fails on a user's machine; an apt package
that jammy does not ship fails there too. Checked over the goldens and over fresh renders.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from render_plans import golden_cases
from support import REPO_ROOT
from test_render_dockerfile import instructions

from r4b_deploy.deployment import DOCKERFILE_NAME
from r4b_deploy.pins import gpu_pins
from r4b_deploy.render.deployment import render_files
from r4b_deploy.render.dockerfile import ROUTER_VENV_DIR, VENV_DIR
from r4b_deploy.render.options import RenderOptions

VENVS = (VENV_DIR, ROUTER_VENV_DIR)  # vLLM's, and the router's (replicas only)
BASE_IMAGE_FILE = REPO_ROOT / "profiles" / "base-image.yaml"
GOLDEN_DIR = REPO_ROOT / "tests" / "golden"
_SEPARATORS = re.compile(r"&&|\|\||;|\|")


def _base() -> dict:
    return yaml.safe_load(BASE_IMAGE_FILE.read_text())


def _commands(shell: str) -> list[list[str]]:
    """Each simple command of a RUN/CMD line, as words (leading VAR=value assignments dropped)."""
    out = []
    for part in _SEPARATORS.split(shell):
        words = shlex.split(part)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        if words:
            out.append(words)
    return out


def problems(dockerfile: str, base: dict) -> list[str]:
    """What the Dockerfile runs or installs that the real base image (plus earlier steps) lacks."""
    installable = base["installable"]
    base_commands = set(base["commands"])
    stages: dict[str, set[str]] = {}
    found: list[str] = []
    available: set[str] = set()
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            if image == base["image"]:
                available = set(base_commands)
            elif image in stages:
                available = set(stages[image])
            else:
                found.append(f"FROM {image}: neither the base image nor an earlier stage")
                available = set()
            stage_name = name.strip() or f"#{len(stages)}"
            stages[stage_name] = available
            continue
        if keyword == "COPY" and args.startswith("--from="):
            available.update(venv for venv in VENVS if f" {venv} " in f"{args} ")
        if keyword in ("RUN", "HEALTHCHECK", "ENTRYPOINT"):
            shell = args.split("CMD ", 1)[1] if keyword == "HEALTHCHECK" else args
            if keyword == "ENTRYPOINT":
                shell = " ".join(shlex.quote(word) for word in yaml.safe_load(args))
            for words in _commands(shell):
                program = words[0]
                venv = next((v for v in VENVS if program.startswith(f"{v}/")), None)
                if venv is not None:
                    if venv not in available:
                        found.append(f"{keyword} runs {program} before {venv} exists")
                elif program not in available:
                    found.append(f"{keyword} runs {program!r}, which the base image does not have at that point")
                if program == "apt-get" and "install" in words:
                    for package in (w for w in words[words.index("install") + 1 :] if not w.startswith("-")):
                        if package not in installable:
                            found.append(f"apt-get installs {package!r}, not listed as shipped by jammy")
                        else:
                            available.update(installable[package]["commands"])
                if len(words) >= 4 and words[1:3] == ["-m", "venv"]:
                    available.add(words[3])
        stages[list(stages)[-1]] = available
    return found


def _golden_dockerfiles() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*/Dockerfile"))


def test_the_data_file_describes_the_pinned_base_image() -> None:
    base = _base()
    assert base["image"] == gpu_pins().base_image
    assert not any(name.startswith("python") for name in base["ships"]), "the real base image has no Python"
    assert "curl" not in base["ships"], "NVIDIA's base layer purges curl"


@pytest.mark.parametrize("path", _golden_dockerfiles(), ids=lambda p: p.parent.name)
def test_golden_dockerfiles_need_nothing_the_base_image_lacks(path: Path) -> None:
    assert problems(path.read_text(), _base()) == []


@pytest.mark.parametrize("case", ["light", "heavy", "tp8", "rehearsal", "light-custom"])
def test_rendered_dockerfiles_need_nothing_the_base_image_lacks(case: str, tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path)[case]
    text = render_files(plan, RenderOptions(**kwargs), tmp_path / "d")[DOCKERFILE_NAME]
    assert problems(text, _base()) == []


def test_a_dockerfile_relying_on_the_stand_ins_python_is_caught() -> None:
    """The rehearsal Dockerfile as it was: `python3 -m venv` on a base with no python3."""
    old = (
        f"FROM {gpu_pins().base_image} AS base\n"
        "RUN apt-get update \\\n && apt-get install -y --no-install-recommends python3-venv libnuma1 curl\n"
        "FROM base AS build\n"
        "RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install x\n"
        "FROM base\n"
        "COPY --from=build /opt/venv /opt/venv\n"
        "HEALTHCHECK CMD curl -fsS http://127.0.0.1:8000/health || exit 1\n"
    )
    found = problems(old, _base())
    assert any("'python3-venv'" in p for p in found), found
    assert any("'python3'" in p for p in found), found


def test_curl_before_its_install_is_caught() -> None:
    text = f"FROM {gpu_pins().base_image}\nRUN curl -fsSL https://example.invalid/x\n"
    assert problems(text, _base()) == ["RUN runs 'curl', which the base image does not have at that point"]
