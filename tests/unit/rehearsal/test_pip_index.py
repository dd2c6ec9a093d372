"""Where pip finds torch's CPU build: the option, the variable, the profile; and the message when it cannot."""

from __future__ import annotations

import pytest

from r4b_deploy.errors import UsageError
from r4b_deploy.pins import rehearsal_profile
from r4b_deploy.rehearsal.pip_index import (
    INDEX_RETRIES,
    INDEX_TIMEOUT_S,
    TORCH_INDEX_ENV,
    TorchSource,
    pip_failure,
    torch_source,
)

PYTORCH_CPU = "https://download.pytorch.org/whl/cpu"


def test_the_default_is_the_profiles_pytorch_cpu_index() -> None:
    assert rehearsal_profile().torch_index_url == PYTORCH_CPU
    source = torch_source(environ={})
    assert source.index_url == PYTORCH_CPU
    # An extra index (pip's own configuration stays), with bounded retries so a dead index fails fast.
    assert source.pip_args() == [
        "--extra-index-url",
        PYTORCH_CPU,
        "--retries",
        str(INDEX_RETRIES),
        "--timeout",
        str(INDEX_TIMEOUT_S),
    ]
    assert "--isolated" not in source.pip_args() and "--index-url" not in source.pip_args()


def test_the_variable_overrides_the_profile_and_the_option_overrides_both() -> None:
    env = {TORCH_INDEX_ENV: "https://mirror.example/whl/cpu"}
    assert torch_source(environ=env).index_url == "https://mirror.example/whl/cpu"
    assert torch_source(environ=env).origin == TORCH_INDEX_ENV
    chosen = torch_source("file:///srv/wheels/simple", environ=env)
    assert chosen.index_url == "file:///srv/wheels/simple" and chosen.origin == "--torch-index-url"


def test_none_means_no_index_at_all() -> None:
    source = torch_source(environ={TORCH_INDEX_ENV: "none"})
    assert source.index_url is None
    assert source.pip_args() == ["--no-index"]


def test_a_value_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(UsageError, match=r"R4B_TORCH_INDEX_URL: 'pytorch' is not an index URL"):
        torch_source(environ={TORCH_INDEX_ENV: "pytorch"})


PIP_LOG = """downloading torch
Looking in indexes: https://pypi.org/simple, https://download.pytorch.org/whl/cpu
WARNING: Retrying (Retry(total=0, ...)) after connection broken by 'NewConnectionError(...: Failed to establish \
a new connection: [Errno -2] Name or service not known')': /whl/cpu/torch/
ERROR: Could not find a version that satisfies the requirement torch==2.13.0+cpu (from versions: 2.12.0, 2.13.0)
ERROR: No matching distribution found for torch==2.13.0+cpu
"""


def test_a_missing_wheel_names_the_package_where_pip_looked_and_the_option() -> None:
    problem = pip_failure(PIP_LOG, "downloading torch", torch_source(environ={}), "R4B_WHEELHOUSE")
    assert problem is not None
    assert "no wheel for torch==2.13.0+cpu" in problem.message
    assert "https://pypi.org/simple, https://download.pytorch.org/whl/cpu" in problem.message
    assert f"{PYTORCH_CPU} (profiles/vllm.yaml rehearsal.torch_index_url) could not be reached" in problem.message
    assert "--torch-index-url" in problem.fix and TORCH_INDEX_ENV in problem.fix and "R4B_WHEELHOUSE" in problem.fix
    assert "PyPI must be reachable" not in problem.fix


def test_pip_with_only_pypi_says_so() -> None:
    log = "ERROR: No matching distribution found for torch==2.13.0+cpu\n"
    problem = pip_failure(log, "pip install torch", TorchSource(index_url=None, origin="x"), "R4B_WHEELHOUSE")
    assert problem is not None and "looked in indexes https://pypi.org/simple" in problem.message


def test_other_pip_failures_keep_the_generic_message() -> None:
    assert pip_failure("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES\n", "x", None, "R4B_WHEELHOUSE") is None
