"""Measure this machine's GPUs through NVML (pynvml, from nvidia-ml-py) into an Inventory.

Only this package imports pynvml, and only inside functions: commands that never measure a GPU
don't pay for it. Facts the planner cannot do without (count, name, memory, compute capability)
raise EnvironmentProblem when NVML cannot give them; optional ones (UUID, PCI, MIG, NVLink, CUDA
version) become None plus a note. NVMLError_FunctionNotFound is never read as "not supported": it
means the installed driver's library lacks a symbol this pynvml calls, which must be said.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from r4b_deploy.errors import EnvironmentProblem
from r4b_deploy.hardware.inventory import GPU, Inventory

NVML_LIBRARY_NAME = "libnvidia-ml.so.1"
NVML_PACKAGE = "nvidia-ml-py"
# nvmlSystemGetCudaDriverVersion answers 1000 * major + 10 * minor: 12040 -> "12.4".
CUDA_VERSION_MAJOR_FACTOR = 1000
CUDA_VERSION_MINOR_FACTOR = 10
# Suggested whenever NVML cannot be used: the planner works from the catalog instead.
NO_NVML_FIX = "or plan without measuring, naming the GPU: r4b-deploy plan --gpu L4 (list: r4b-deploy gpus --catalog)"

T = TypeVar("T")


def format_cuda_version(version: int) -> str:
    """NVML's integer CUDA version (12040) as people write it ("12.4")."""
    major = version // CUDA_VERSION_MAJOR_FACTOR
    minor = (version % CUDA_VERSION_MAJOR_FACTOR) // CUDA_VERSION_MINOR_FACTOR
    return f"{major}.{minor}"


def probe_inventory() -> Inventory:
    """The GPUs of this machine as NVML reports them; EnvironmentProblem when NVML is unusable."""
    pynvml = _import_pynvml()
    _init(pynvml)
    try:
        return _Probe(pynvml).inventory()
    finally:
        with contextlib.suppress(pynvml.NVMLError):  # best effort: the answer is already read
            pynvml.nvmlShutdown()


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError as exc:
        raise EnvironmentProblem(
            f"the Python package {NVML_PACKAGE} (module pynvml) is not installed",
            fix=f"reinstall r4b-deploy (it depends on {NVML_PACKAGE}), {NO_NVML_FIX}",
        ) from exc
    return pynvml


def _init(pynvml: ModuleType) -> None:
    """nvmlInit, with each way it fails turned into one line that names cause and fix."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound as exc:
        raise EnvironmentProblem(
            f"NVML library {NVML_LIBRARY_NAME} not found: no NVIDIA driver is installed here, "
            "or its library is not on the loader path",
            fix=f"install the NVIDIA driver (nvidia-smi should then work), {NO_NVML_FIX}",
        ) from exc
    except pynvml.NVMLError_DriverNotLoaded as exc:
        raise EnvironmentProblem(
            "the NVIDIA driver is not loaded (NVML: Driver Not Loaded)",
            fix="load it (sudo modprobe nvidia, or reboot after installing the driver); in a container, "
            f"start it with --gpus all; {NO_NVML_FIX}",
        ) from exc
    except pynvml.NVMLError_NoPermission as exc:
        raise EnvironmentProblem(
            "no permission to use the NVIDIA driver (NVML: Insufficient Permissions)",
            fix=f"check the permissions of /dev/nvidia* for this user; {NO_NVML_FIX}",
        ) from exc
    except pynvml.NVMLError_LibRmVersionMismatch as exc:
        raise EnvironmentProblem(
            "the NVML library and the loaded NVIDIA kernel driver are different versions",
            fix=f"reboot (or reload the nvidia kernel module) after the driver update; {NO_NVML_FIX}",
        ) from exc
    except pynvml.NVMLError_FunctionNotFound as exc:
        raise EnvironmentProblem(
            f"{NVML_LIBRARY_NAME} lacks nvmlInitWithFlags: the NVIDIA driver is too old for {NVML_PACKAGE}",
            fix=f"update the NVIDIA driver; {NO_NVML_FIX}",
        ) from exc
    except pynvml.NVMLError as exc:
        raise EnvironmentProblem(
            f"NVML initialisation failed: {exc}", fix=f"check that nvidia-smi works; {NO_NVML_FIX}"
        ) from exc


class _Notes:
    """Notes about what NVML could not say, grouped so 8 GPUs with one gap make one line."""

    def __init__(self) -> None:
        self._by_text: dict[str, list[int]] = {}

    def add(self, text: str, gpu: int | None = None) -> None:
        indices = self._by_text.setdefault(text, [])
        if gpu is not None and gpu not in indices:
            indices.append(gpu)

    def lines(self) -> list[str]:
        out = []
        for text, indices in self._by_text.items():
            if not indices:
                out.append(text)
            else:
                label = "GPU" if len(indices) == 1 else "GPUs"
                out.append(f"{label} {', '.join(map(str, indices))}: {text}")
        return out


class _Probe:
    """One reading of NVML, between nvmlInit and nvmlShutdown."""

    def __init__(self, pynvml: ModuleType) -> None:
        self.nvml = pynvml
        self.notes = _Notes()
        self.links: dict[int, list[int]] = {}  # GPU index -> its active NVLink links

    # -- calling NVML -------------------------------------------------------------------------
    def required(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A fact the planner cannot do without: any NVML failure is an EnvironmentProblem."""
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            raise self.fatal(what, fn.__name__, exc) from exc

    def fatal(self, what: str, function: str, exc: Exception) -> EnvironmentProblem:
        if isinstance(exc, self.nvml.NVMLError_FunctionNotFound):
            return EnvironmentProblem(
                f"{NVML_LIBRARY_NAME} lacks the function behind {function} ({what}): "
                f"the NVIDIA driver is older than {NVML_PACKAGE} expects",
                fix=f"update the NVIDIA driver; {NO_NVML_FIX}",
            )
        return EnvironmentProblem(f"NVML cannot read {what}: {exc}", fix=f"check nvidia-smi; {NO_NVML_FIX}")

    def optional(self, what: str, fn: Callable[..., T], *args: Any, gpu: int | None = None) -> T | None:
        """A fact we can plan without: NOT_SUPPORTED is a plain None, any other failure also a note."""
        nvml = self.nvml
        try:
            return fn(*args)
        except nvml.NVMLError_NotSupported:
            return None
        except nvml.NVMLError_FunctionNotFound:
            self.notes.add(
                f"{what} unknown: {NVML_LIBRARY_NAME} lacks the function behind {fn.__name__} "
                f"(driver older than {NVML_PACKAGE} expects)",
                gpu,
            )
        except nvml.NVMLError as exc:
            self.notes.add(f"{what} unknown: NVML says {exc}", gpu)
        return None

    # -- reading ------------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        nvml = self.nvml
        driver_version = self.optional("driver version", nvml.nvmlSystemGetDriverVersion)
        cuda = self.optional("CUDA driver version", nvml.nvmlSystemGetCudaDriverVersion)
        count = self.required("the GPU count", nvml.nvmlDeviceGetCount)
        if count == 0:
            driver = f"driver {driver_version} loaded" if driver_version else "driver loaded"
            raise EnvironmentProblem(
                f"NVML found no GPUs ({driver}, 0 devices)",
                fix=f"check nvidia-smi; in a container, start it with --gpus all; {NO_NVML_FIX}",
            )
        handles = [self.required(f"GPU {i}'s handle", nvml.nvmlDeviceGetHandleByIndex, i) for i in range(count)]
        gpus = [self.gpu(i, handle) for i, handle in enumerate(handles)]
        pairs = self.nvlink_pairs(handles, gpus)
        return Inventory(
            source="nvml",
            driver_version=driver_version,
            cuda_driver_version=format_cuda_version(cuda) if cuda else None,
            gpus=gpus,
            nvlink_pairs=pairs,
            notes=self.notes.lines(),
        )

    def gpu(self, index: int, handle: Any) -> GPU:
        nvml = self.nvml
        name = self.required(f"GPU {index}'s name", nvml.nvmlDeviceGetName, handle)
        major, minor = self.required(
            f"GPU {index}'s compute capability", nvml.nvmlDeviceGetCudaComputeCapability, handle
        )
        total_bytes, free_bytes = self.memory(index, name, handle)
        pci = self.optional("PCI bus id", nvml.nvmlDeviceGetPciInfo_v3, handle, gpu=index)
        mig = self.optional("MIG mode", nvml.nvmlDeviceGetMigMode, handle, gpu=index)
        mig_enabled = None if mig is None else mig[0] == nvml.NVML_DEVICE_MIG_ENABLE
        if mig_enabled:
            self.notes.add("MIG is enabled: a process sees one MIG instance, not the whole GPU's memory", index)
        if mig is not None and mig[0] != mig[1]:
            self.notes.add("a MIG mode change is pending until the GPU is reset", index)
        self.links[index] = self.active_links(index, handle)
        return GPU(
            index=index,
            name=name,
            uuid=self.optional("UUID", nvml.nvmlDeviceGetUUID, handle, gpu=index),
            pci_bus_id=pci.busId if pci is not None else None,
            memory_total_bytes=total_bytes,
            memory_free_bytes=free_bytes,
            compute_capability=f"{major}.{minor}",
            mig_enabled=mig_enabled,
            nvlink_active_links=len(self.links[index]),
        )

    def memory(self, index: int, name: str, handle: Any) -> tuple[int, int | None]:
        """(total, free) bytes; where NVML answers NOT_SUPPORTED (seen with MIG), the catalog's total."""
        nvml = self.nvml
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
        except nvml.NVMLError_NotSupported:
            info = None
        except nvml.NVMLError as exc:  # any other failure: as for every required fact
            raise self.fatal(f"GPU {index}'s memory", "nvmlDeviceGetMemoryInfo", exc) from exc
        if info is not None:
            return info.total, info.free
        from r4b_deploy.hardware.catalog import match_catalog

        entry = match_catalog(name)
        if entry is None:
            raise EnvironmentProblem(
                f"NVML does not report GPU {index}'s memory ({name}: Not Supported) and the GPU catalog "
                "does not know that model",
                fix=f"name the GPU instead: {NO_NVML_FIX.removeprefix('or ')}",
            )
        self.notes.add(
            f"NVML does not report memory for {name} (Not Supported, seen with MIG); "
            f"using the catalog's {entry.memory_mib} MiB for {entry.name}",
            index,
        )
        return entry.memory_total_bytes, None

    def active_links(self, index: int, handle: Any) -> list[int]:
        """The NVLink links that are up. NOT_SUPPORTED or INVALID_ARGUMENT: no such link."""
        nvml = self.nvml
        links = []
        for link in range(nvml.NVML_NVLINK_MAX_LINKS):
            try:
                if nvml.nvmlDeviceGetNvLinkState(handle, link) == nvml.NVML_FEATURE_ENABLED:
                    links.append(link)
            except (nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument):
                continue
            except nvml.NVMLError_FunctionNotFound:
                self.notes.add(f"NVLink unknown: {NVML_LIBRARY_NAME} lacks nvmlDeviceGetNvLinkState", index)
                return []
            except nvml.NVMLError as exc:
                self.notes.add(f"NVLink unknown: NVML says {exc}", index)
                return []
        return links

    def nvlink_pairs(self, handles: list[Any], gpus: list[GPU]) -> list[tuple[int, int]]:
        """GPU pairs joined by NVLink: a link's far end is another GPU (by PCI address) or an
        NVSwitch, and all GPUs on the switch fabric reach each other."""
        nvml = self.nvml
        by_address = {_pci_address(g.pci_bus_id): g.index for g in gpus if g.pci_bus_id}
        pairs: set[tuple[int, int]] = set()
        on_switch: set[int] = set()
        for gpu, handle in zip(gpus, handles, strict=True):
            for link in self.links[gpu.index]:
                remote = self.optional(
                    "NVLink peers", nvml.nvmlDeviceGetNvLinkRemotePciInfo, handle, link, gpu=gpu.index
                )
                if remote is None:
                    continue
                peer = by_address.get((remote.domain, remote.bus, remote.device))
                if peer is not None and peer != gpu.index:
                    pairs.add((min(gpu.index, peer), max(gpu.index, peer)))
                    continue
                kind = self.optional(
                    "NVLink peer type", nvml.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link, gpu=gpu.index
                )
                if kind == nvml.NVML_NVLINK_DEVICE_TYPE_SWITCH:
                    on_switch.add(gpu.index)
        pairs.update(itertools.combinations(sorted(on_switch), 2))
        if len(on_switch) > 1:
            members = ", ".join(map(str, sorted(on_switch)))
            self.notes.add(f"GPUs {members} share an NVSwitch fabric: every pair is NVLinked")
        return sorted(pairs)


def _pci_address(bus_id: str) -> tuple[int, int, int] | None:
    """'00000000:18:00.0' -> (0, 0x18, 0): domain, bus, device, as NVML's PCI struct has them."""
    try:
        domain, bus, rest = bus_id.split(":")
        device = rest.split(".")[0]
        return int(domain, 16), int(bus, 16), int(device, 16)
    except ValueError:
        return None
