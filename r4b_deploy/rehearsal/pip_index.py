"""Where pip finds the CPU build of torch, and what to say when it does not.

PyPI carries no `+cpu` torch wheels: PyTorch publishes them on its own CPU index
(profiles/vllm.yaml `rehearsal.torch_index_url`). pip gets that index as an *extra* index, beside
its own configuration (index-url, find-links, PIP_* variables), which is always respected (pip is
never run `--isolated`): a machine with a local wheel folder or a mirror keeps working. The index
is only given to the step that fetches torch itself, with bounded retries and timeout, so an
unreachable index costs seconds once, not a retry storm per dependency.

    R4B_TORCH_INDEX_URL=URL   (or --torch-index-url URL)  another index: a mirror, a proxy
    R4B_TORCH_INDEX_URL=none  (or --torch-index-url none) no index at all (`pip --no-index`):
                              fully offline, from pip's configured find-links only
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict

from r4b_deploy.errors import EnvironmentProblem, UsageError

TORCH_INDEX_ENV = "R4B_TORCH_INDEX_URL"
TORCH_INDEX_OPTION = "--torch-index-url"
NO_INDEX = "none"
# Only for the torch step: an unreachable index fails in seconds (pip's defaults: 5 retries with
# back-off and a 15 s timeout, per request). A 200 MB wheel still downloads: the timeout is per read.
INDEX_RETRIES = 1
INDEX_TIMEOUT_S = 15
PYPI_SIMPLE = "https://pypi.org/simple"

_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_LOOKING_IN = re.compile(r"^Looking in (indexes|links): (.+)$", re.MULTILINE)
_CONNECTION_ERROR = re.compile(r"NewConnectionError|ConnectTimeout|ProxyError|SSLError|timed out|Connection refused")


class TorchSource(BaseModel):
    """Where the torch step looks, beyond pip's own configuration."""

    model_config = ConfigDict(frozen=True)

    index_url: str | None  # None: no index at all (--no-index)
    origin: str  # what chose it: the option, the environment variable, or the profile

    def pip_args(self) -> list[str]:
        if self.index_url is None:
            return ["--no-index"]
        return ["--extra-index-url", self.index_url, "--retries", str(INDEX_RETRIES), "--timeout", str(INDEX_TIMEOUT_S)]


def torch_source(option: str | None = None, environ: Mapping[str, str] | None = None) -> TorchSource:
    """The option if given, else R4B_TORCH_INDEX_URL, else the profile's PyTorch CPU index."""
    from r4b_deploy.pins import rehearsal_profile

    env = os.environ if environ is None else environ
    if option:
        value, origin = option, TORCH_INDEX_OPTION
    elif env.get(TORCH_INDEX_ENV):
        value, origin = env[TORCH_INDEX_ENV], TORCH_INDEX_ENV
    else:
        value, origin = rehearsal_profile().torch_index_url, "profiles/vllm.yaml rehearsal.torch_index_url"
    value = value.strip()
    if value.lower() == NO_INDEX:
        return TorchSource(index_url=None, origin=origin)
    if not re.fullmatch(r"(https?|file)://\S+", value):
        raise UsageError(
            f"{origin}: {value!r} is not an index URL",
            fix=f"give an http(s):// or file:// URL of a wheel index, or {NO_INDEX!r} for no index",
        )
    return TorchSource(index_url=value, origin=origin)


def pip_failure(log_text: str, what: str, source: TorchSource | None, wheelhouse_env: str) -> EnvironmentProblem | None:
    """A one-line error for pip's "No matching distribution" (the package, where pip looked, the
    option that fixes it); None for other failures, which keep the generic message."""
    missing = _NO_MATCH.findall(log_text)
    if not missing:
        return None
    package = missing[-1]
    looked = {kind: places.strip() for kind, places in _LOOKING_IN.findall(log_text)}
    indexes = looked.get("indexes") or (
        "no index (--no-index)" if "--no-index" in log_text.split("\n$ ")[-1] else PYPI_SIMPLE
    )
    where = f"indexes {indexes}" + (f"; links {looked['links']}" if "links" in looked else "")
    asked = source is not None and source.index_url is not None and source.index_url in indexes
    if asked and _unreachable(log_text, source.index_url):  # type: ignore[union-attr, arg-type]
        where += f"; {source.index_url} ({source.origin}) could not be reached"  # type: ignore[union-attr]
    return EnvironmentProblem(
        f"{what}: pip found no wheel for {package} (looked in {where})",
        fix=f"give {TORCH_INDEX_OPTION} URL (or {TORCH_INDEX_ENV}=URL) an index this machine reaches that has "
        f"it (PyTorch's CPU index or a mirror of it), or set {wheelhouse_env} to a folder holding the wheels",
    )


def _unreachable(log_text: str, index_url: str) -> bool:
    """pip's retry warnings name the path it could not fetch, with the connection error."""
    path = urlparse(index_url).path.rstrip("/") or "/"
    return any(path in line and _CONNECTION_ERROR.search(line) for line in log_text.splitlines())
