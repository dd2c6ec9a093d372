"""Hostile values that reach the rendered files: compose's `$` interpolation, absurd sizes, paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from render_plans import light_plan

from r4b_deploy.deployment import COMPOSE_NAME, LABEL_DIR
from r4b_deploy.errors import ExitCode, UsageError
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import MAX_SHM_SIZE_BYTES, MAX_ULIMIT, RenderOptions, ulimit_max

# Compose reads `$X`, `${X:?msg}` and `$(...)`-looking text as interpolation; `$$` is a literal `$`.
DOLLAR_NAMES = ["dep$HOME", "dep$(id)", "${X:?boom}", "a$$b", "end$"]


def _compose_value(text: str) -> str:
    """A compose string as compose reads it: `$$` is `$`; any other `$` would be interpolated."""
    assert re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", "")) is None, text
    return text.replace("$$", "$")


@pytest.mark.parametrize("name", DOLLAR_NAMES)
def test_a_dollar_in_the_folder_path_reaches_compose_escaped(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    deployment = write_deployment(light_plan(), RenderOptions(hf_cache_dir=tmp_path / "hf"), out, environ={})
    compose = yaml.safe_load((out / COMPOSE_NAME).read_text())
    labels = compose["services"]["vllm"]["labels"]
    # The label `down` finds the container by is the folder, as compose will read it.
    assert _compose_value(labels[LABEL_DIR]) == str(deployment.dir) == str(out)
    assert deployment.container.labels[LABEL_DIR] == str(out)  # the manifest keeps the real path
    for value in labels.values():
        _compose_value(value)


def test_shm_size_is_bounded_by_what_docker_reads_back() -> None:
    with pytest.raises(UsageError, match=r"--shm-size: .*at most") as caught:
        RenderOptions(shm_size_bytes="99999999999999999999g")
    assert str(MAX_SHM_SIZE_BYTES) in caught.value.message or "8589934591g" in caught.value.message
    assert RenderOptions(shm_size_bytes=MAX_SHM_SIZE_BYTES).shm_size_bytes == MAX_SHM_SIZE_BYTES
    with pytest.raises(UsageError, match="at most"):
        RenderOptions(shm_size_bytes=MAX_SHM_SIZE_BYTES + 1)


@pytest.mark.parametrize("name", ["nofile", "memlock", "nproc"])
def test_ulimits_are_bounded(name: str) -> None:
    limit = ulimit_max(name)
    assert RenderOptions(ulimits={name: limit}).ulimits == {name: limit}
    with pytest.raises(UsageError, match=rf"--ulimit: {name}=.* at most {limit}"):
        RenderOptions(ulimits={name: 99999999999999999999})
    with pytest.raises(UsageError, match=rf"at most {limit}"):
        RenderOptions(ulimits={name: limit + 1})


def test_nofile_is_bounded_by_the_kernels_nr_open_ceiling() -> None:
    assert ulimit_max("nofile") < MAX_ULIMIT


def test_hf_cache_naming_a_regular_file_is_refused(tmp_path: Path) -> None:
    regular = tmp_path / "afile"
    regular.write_text("x")
    with pytest.raises(UsageError, match=r"--hf-cache: .*is not a folder"):
        RenderOptions(hf_cache_dir=regular)
    RenderOptions(hf_cache_dir=tmp_path / "not-yet")  # created on the first download


def test_a_folder_name_over_the_filesystem_limit_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / ("a" * 300)
    with pytest.raises(UsageError, match=r"longer than .*255") as caught:
        write_deployment(light_plan(), RenderOptions(hf_cache_dir=tmp_path / "hf"), out, environ={})
    assert caught.value.exit_code == ExitCode.USAGE
    assert "a" * 300 not in caught.value.message  # one readable line
    deep = tmp_path.joinpath(*(["b" * 200] * 25))  # each name fits, the path does not
    with pytest.raises(UsageError, match=r"longer than .*4096"):
        write_deployment(light_plan(), RenderOptions(hf_cache_dir=tmp_path / "hf"), deep, environ={})
