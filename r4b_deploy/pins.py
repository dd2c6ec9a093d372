"""profiles/vllm.yaml as data: the vLLM builds the toolkit installs and what each needs from the host.

One reader per section, shared by the planner, the renderer, doctor and the rehearsal harness;
this module only parses and chooses (it builds nothing), so importing it stays cheap.

GPU hosts get one of a table of vLLM releases (`gpu.releases`, newest first), each with the torch
and CUDA runtime its wheels bring; the CUDA runtime decides which host drivers can run it
(`gpu.cuda_drivers`). `choose_gpu_pins` picks the newest release the measured driver can run, or
the one asked for, and says why; `gpu_pins(version)` is one release flattened with what it needs.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import Field, model_validator

from r4b_deploy.datafile import StrictModel as _Strict
from r4b_deploy.datafile import load_data_file
from r4b_deploy.errors import UsageError
from r4b_deploy.paths import profiles_dir

PINS_FILE_NAME = "vllm.yaml"
_WHAT = "the vLLM pins"
# Releases and drivers are plain dotted numbers ("0.33.0", "580.65.06"): compared numerically.
DOTTED_NUMBERS = r"^[0-9]+(\.[0-9]+)*$"
VERSION_FLAG = "--vllm-version"


def version_tuple(version: str) -> tuple[int, ...]:
    """ "580.65.06" -> (580, 65, 6): numeric order, so 12.10 > 12.8 and 0.33.0 > 0.4.0. The one
    reading of a version (releases, drivers, Pythons); a suffix ("0.11.0rc1", "+cu128") is ignored."""
    parts = []
    for part in version.strip().split("+")[0].split("."):
        digits = re.match(r"[0-9]+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(part):  # "0rc1": the number before the suffix, and no further
            break
    return tuple(parts)


class ReleaseSources(_Strict):
    """Where each number of a release was read (a wheel's METADATA line)."""

    torch: str = Field(min_length=1)
    cuda_runtime: str = Field(min_length=1)
    requires_python: str = Field(min_length=1)
    constraints: str | None = None  # why each extra pin is needed (required when there are any)


class VllmRelease(_Strict):
    """One row of `gpu.releases`: a vLLM release and what its wheels bring."""

    vllm_version: str = Field(pattern=DOTTED_NUMBERS)
    torch: str
    cuda_runtime: str = Field(pattern=DOTTED_NUMBERS)
    requires_python: str  # the wheel's Requires-Python specifier
    # Pins installed beside vllm==V: where today's resolution of vLLM's own ranges breaks R-4B.
    constraints: list[str] = Field(default_factory=list)
    sources: ReleaseSources

    @model_validator(mode="after")
    def _constraints_have_a_source(self) -> VllmRelease:
        if self.constraints and not (self.sources.constraints or "").strip():
            raise ValueError("constraints need sources.constraints: why each pin is there")
        return self


class CudaDriverNeeds(_Strict):
    """One row of `gpu.cuda_drivers`: the host driver a CUDA runtime needs."""

    min_driver_version: str = Field(pattern=DOTTED_NUMBERS)  # minor-version compatibility floor
    recommended_driver_version: str = Field(pattern=DOTTED_NUMBERS)  # runs the runtime natively
    source: str = Field(min_length=1)


class GpuSection(_Strict):
    """`gpu:` as written: the table and what every GPU image shares."""

    python: str = Field(pattern=r"^3\.[0-9]+$")
    base_image: str
    # /dev/shm for NCCL and vLLM's shared-memory broadcast; the renderer's default when absent.
    shm_size_bytes: int = Field(gt=0)
    releases: list[VllmRelease] = Field(min_length=1)
    cuda_drivers: dict[str, CudaDriverNeeds]

    @model_validator(mode="after")
    def _consistent(self) -> GpuSection:
        versions = [version_tuple(r.vllm_version) for r in self.releases]
        if versions != sorted(set(versions), reverse=True):
            raise ValueError("releases must be listed newest first, each once")
        for release in self.releases:
            if release.cuda_runtime not in self.cuda_drivers:
                raise ValueError(
                    f"release {release.vllm_version}: cuda_runtime {release.cuda_runtime} has no row in cuda_drivers"
                )
        return self


class GpuPins(_Strict):
    """One release with everything it needs: what the renderer installs and doctor checks."""

    vllm_version: str
    torch: str
    python: str
    requires_python: str
    requirements: list[str]  # what pip installs: vllm==V and the release's constraints
    base_image: str
    cuda_runtime: str
    min_driver_version: str
    recommended_driver_version: str
    shm_size_bytes: int = Field(gt=0)


class PinChoice(_Strict):
    """The release chosen for a host, why, and what to warn about."""

    pins: GpuPins
    reason: str
    warning: str | None = None


class RehearsalProfile(_Strict):
    """`rehearsal:`: the CPU build's pins and the environment it runs in."""

    vllm_package: str
    vllm_version: str
    packages: list[str] = Field(min_length=1)
    torch_index_url: str  # PyTorch's CPU wheel index: the `+cpu` torch pin is not on PyPI
    min_python: str
    uninstall: list[str] = Field(default_factory=list)
    env: dict[str, str]
    max_model_len: int = Field(gt=0)
    kv_block_size_tokens: int = Field(gt=0)  # the CPU build's KV block (the rehearsal plan's KV tokens)
    shm_size_bytes: int = Field(gt=0)


@lru_cache(maxsize=1)
def gpu_section() -> GpuSection:
    """The packaged `gpu:` section, read once."""
    return load_data_file(GpuSection, profiles_dir() / PINS_FILE_NAME, _WHAT, section="gpu")


def gpu_versions() -> list[str]:
    """The supported GPU releases, newest first."""
    return [r.vllm_version for r in gpu_section().releases]


def gpu_pins(vllm_version: str | None = None) -> GpuPins:
    """One release of the table (default: the newest) with what it needs from the host.

    A version not in the table is a UsageError listing the table: only these releases' flags are
    checked against their own vLLM (tests/integration/test_gpu_image.py)."""
    section = gpu_section()
    wanted = section.releases[0].vllm_version if vllm_version is None else vllm_version
    release = next((r for r in section.releases if r.vllm_version == wanted), None)
    if release is None:
        raise UsageError(
            f"{VERSION_FLAG} {wanted}: not a supported vLLM release for GPUs (supported: {', '.join(gpu_versions())})",
            fix=f"choose one of {', '.join(gpu_versions())}; profiles/vllm.yaml gpu.releases lists them with "
            "the CUDA runtime and driver each needs",
        )
    needs = section.cuda_drivers[release.cuda_runtime]
    return GpuPins(
        vllm_version=release.vllm_version,
        torch=release.torch,
        python=section.python,
        requires_python=release.requires_python,
        requirements=[f"vllm=={release.vllm_version}", *release.constraints],
        base_image=section.base_image,
        cuda_runtime=release.cuda_runtime,
        min_driver_version=needs.min_driver_version,
        recommended_driver_version=needs.recommended_driver_version,
        shm_size_bytes=section.shm_size_bytes,
    )


def _needs(pins: GpuPins) -> str:
    return f"CUDA {pins.cuda_runtime}, driver >= {pins.min_driver_version}"


def choose_gpu_pins(driver_version: str | None, requested: str | None = None) -> PinChoice:
    """The release for a host whose driver is `driver_version` (None: not measured, e.g. a named GPU).

    Asked for (`requested`): that release, with a warning when the driver is too old for it.
    Otherwise the newest release the driver can run; with no driver known, the newest. A driver
    older than every release gets the oldest, with a warning (doctor fails it; the plan still shows).
    """
    candidates = [gpu_pins(v) for v in gpu_versions()]
    newest, oldest = candidates[0], candidates[-1]
    driver = version_tuple(driver_version) if driver_version else None
    if requested is not None:
        pins = gpu_pins(requested)
        reason = f"vLLM {pins.vllm_version}: chosen with {VERSION_FLAG} ({_needs(pins)})"
        warning = None
        if driver is not None and driver < version_tuple(pins.min_driver_version):
            runnable = next((p for p in candidates if driver >= version_tuple(p.min_driver_version)), None)
            instead = f"use {VERSION_FLAG} {runnable.vllm_version} or " if runnable else ""
            warning = (
                f"driver {driver_version} is older than {pins.min_driver_version}, the oldest that runs vLLM "
                f"{pins.vllm_version}'s CUDA {pins.cuda_runtime} wheels: {instead}upgrade the NVIDIA driver"
            )
        return PinChoice(pins=pins, reason=reason, warning=warning)
    if driver is None:
        return PinChoice(
            pins=newest,
            reason=f"vLLM {newest.vllm_version}: the newest supported release; no driver was measured "
            f"(a named GPU or an inventory without one), so the host must have {_needs(newest)}",
        )
    for pins in candidates:
        if driver >= version_tuple(pins.min_driver_version):
            skipped: dict[str, list[str]] = {}  # the newer releases, by the driver they need
            for newer in candidates[: candidates.index(pins)]:
                skipped.setdefault(newer.min_driver_version, []).append(newer.vllm_version)
            why_not = "; ".join(f"{', '.join(v)} need driver >= {d}" for d, v in skipped.items())
            return PinChoice(
                pins=pins,
                reason=f"vLLM {pins.vllm_version}: the newest supported release driver {driver_version} can run "
                f"({_needs(pins)})" + (f"; newer ones need a newer driver ({why_not})" if skipped else ""),
            )
    return PinChoice(
        pins=oldest,
        reason=f"vLLM {oldest.vllm_version}: the oldest supported release ({_needs(oldest)})",
        warning=f"driver {driver_version} is older than every supported vLLM release needs (the oldest, "
        f"{oldest.vllm_version}, needs {oldest.min_driver_version}; the newest, {newest.vllm_version}, needs "
        f"{newest.min_driver_version}): upgrade the NVIDIA driver",
    )


class RouterPin(_Strict):
    """`router:`: vLLM's router, as pip installs it (replicas on one host, and Kubernetes)."""

    package: str

    @property
    def version(self) -> str:
        return self.package.split("==", 1)[1]


@lru_cache(maxsize=1)
def router_pin() -> RouterPin:
    """The packaged `router:` section, read once."""
    return load_data_file(RouterPin, profiles_dir() / PINS_FILE_NAME, _WHAT, section="router")


@lru_cache(maxsize=1)
def rehearsal_profile() -> RehearsalProfile:
    """The packaged `rehearsal:` section, read once."""
    return load_data_file(RehearsalProfile, profiles_dir() / PINS_FILE_NAME, _WHAT, section="rehearsal")
