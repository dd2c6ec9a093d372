"""The base image the engine has under the production name is as bare as the real one.

The real `nvidia/cuda:12.1.1-devel-ubuntu22.04` has no Python and no curl (profiles/base-image.yaml,
read from NVIDIA's Dockerfiles); a stand-in with either would let a Dockerfile pass here that
fails on a user's machine. Holds for the real image too, should an engine have it.
"""

from __future__ import annotations

import pytest
import yaml
from support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.docker]

ABSENT = ("python3", "python3.10", "python3.11", "python", "pip", "pip3", "curl")


def test_the_base_image_has_no_python_and_no_curl(docker_client, docker_base_image: str) -> None:
    probe = " ; ".join(f"command -v {name} >/dev/null && echo HAS {name}" for name in ABSENT)
    output = docker_client.containers.run(
        docker_base_image, ["sh", "-c", f"{probe}; true"], entrypoint=[], remove=True, network_disabled=True
    ).decode()
    assert output.strip() == "", output


def test_the_base_image_has_what_the_real_one_ships(docker_client, docker_base_image: str) -> None:
    """What a Dockerfile may use before its apt step: the base image's commands and CA certificates."""
    base = yaml.safe_load((REPO_ROOT / "profiles" / "base-image.yaml").read_text())
    shell_builtins = {"exit", "true"}
    probe = " ; ".join(f"command -v {name} >/dev/null || echo MISSING {name}" for name in base["commands"])
    probe += " ; test -s /etc/ssl/certs/ca-certificates.crt || echo MISSING ca-bundle"
    output = docker_client.containers.run(
        docker_base_image, ["sh", "-c", f"{probe}; true"], entrypoint=[], remove=True, network_disabled=True
    ).decode()
    missing = {line.split()[1] for line in output.splitlines() if line.startswith("MISSING")} - shell_builtins
    assert missing == set(), output
