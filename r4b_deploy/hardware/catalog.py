"""The GPU catalog (profiles/gpus.yaml): GPU models known by name, for planning without measuring.

Two ways in: a name a user types (`--gpu A100-80GB:8`, `h100`, `rtx4090`) and a name NVML reports
("NVIDIA A100-SXM4-80GB"). Both resolve to one `GpuCatalogEntry`; the data lives in the YAML file.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from r4b_deploy.datafile import StrictModel, load_data_file
from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import BYTES_PER_GB, BYTES_PER_GIB, BYTES_PER_MIB, GPU, Inventory
from r4b_deploy.paths import profiles_dir

CATALOG_FILE_NAME = "gpus.yaml"
# A sanity bound on NAME:COUNT, not a hardware fact: no single machine carries more GPUs.
MAX_GPU_COUNT = 64
# Words users and drivers put in front of a model name; matching ignores them.
_IGNORED_PREFIXES = ("nvidia", "geforce", "tesla")
_MAX_SUGGESTIONS = 5
_SUGGESTION_CUTOFF = 0.5
_WILDCARDS = frozenset("*?[")  # fnmatch's special characters
LIST_COMMAND = "r4b-deploy gpus --catalog"
# Bounds of a described card: vLLM's CUDA builds need Volta (7.0) or newer; no GPU today has 1 TiB.
MIN_COMPUTE_MAJOR = 7
MAX_CUSTOM_MEMORY_BYTES = 1024 * BYTES_PER_GIB


class GpuCatalogEntry(StrictModel):
    """One GPU model. Memory is what NVML reports on that card (MiB), not the marketing figure."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    aliases: list[str] = Field(default_factory=list)
    nvml_names: list[str] = Field(min_length=1)
    memory_mib: int = Field(gt=0)
    memory_basis: Literal["reported", "nominal"]
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    architecture: str
    nvlink: bool
    source: str = Field(min_length=1)  # where memory and compute capability were read
    # The total CUDA reports (torch.cuda.mem_get_info), which vLLM's budget is a share of; measured
    # in a vLLM log, with that log as cuda_total_source. None: NVML's total less memory.yaml's margin.
    cuda_total_mib: int | None = Field(default=None, gt=0)
    cuda_total_source: str | None = None

    @property
    def memory_total_bytes(self) -> int:
        return self.memory_mib * BYTES_PER_MIB

    @property
    def cuda_total_bytes(self) -> int | None:
        return None if self.cuda_total_mib is None else self.cuda_total_mib * BYTES_PER_MIB

    def matches_nvml_name(self, nvml_name: str) -> bool:
        name = nvml_name.strip().casefold()
        # A pattern without wildcards is compared as text: fnmatch would compile a regex for each
        # of the catalog's patterns on a process's first lookup, which `plan` pays at every start.
        return any(
            fnmatch.fnmatchcase(name, pattern.casefold()) if _WILDCARDS & set(pattern) else name == pattern.casefold()
            for pattern in self.nvml_names
        )

    def lookup_keys(self) -> set[str]:
        return {_normalize(n) for n in (self.name, *self.aliases)}


class GpuCatalog(StrictModel):
    """The whole file; checks that no two entries answer to the same name."""

    gpus: list[GpuCatalogEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> GpuCatalog:
        owner: dict[str, str] = {}
        for entry in self.gpus:
            for key in entry.lookup_keys():
                if key in owner and owner[key] != entry.name:
                    raise ValueError(f"name {key!r} belongs to both {owner[key]} and {entry.name}")
                owner[key] = entry.name
        return self


def _normalize(name: str) -> str:
    """'NVIDIA GeForce RTX-4090' -> 'rtx4090': case, spaces, dashes and vendor words don't matter."""
    key = re.sub(r"[^a-z0-9]", "", name.casefold())
    stripped = True
    while stripped:
        stripped = False
        for prefix in _IGNORED_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                key = key[len(prefix) :]
                stripped = True
    return key


def load_catalog_file(path: Path) -> GpuCatalog:
    """Read and validate a catalog file; any problem is a ConfigError naming file, field and problem."""
    return load_data_file(GpuCatalog, path, "the GPU catalog", field_namer=_field_path)


def _field_path(data: object, loc: tuple[int | str, ...]) -> str:
    """gpus.3.memory_mib -> gpus[3 (A10G)].memory_mib: the entry's name says where to look."""
    parts: list[str] = []
    node = data
    for part in loc:
        child = node[part] if isinstance(node, (list, dict)) and _has(node, part) else None
        if isinstance(part, int) and parts:
            name = child.get("name") if isinstance(child, dict) else None
            parts[-1] += f"[{part}]" if name is None else f"[{part} ({name})]"
        else:
            parts.append(str(part))
        node = child
    return ".".join(parts) or "(top level)"


def _has(node: list | dict, part: int | str) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return part in node


@lru_cache(maxsize=1)
def _packaged_catalog() -> GpuCatalog:
    return load_catalog_file(profiles_dir() / CATALOG_FILE_NAME)


def catalog() -> tuple[GpuCatalogEntry, ...]:
    """The packaged catalog's entries, validated, read once per process."""
    return tuple(_packaged_catalog().gpus)


def match_catalog(name: str) -> GpuCatalogEntry | None:
    """The entry for a name NVML reports ("NVIDIA A100-SXM4-80GB") or a canonical catalog name
    ("A100-80GB", as catalog inventories carry); None if unknown. Aliases are not consulted: a
    bare "NVIDIA H100" (also an H100 94 GB) must not pass for the H100-80GB alias "H100"."""
    entries = catalog()
    for entry in entries:
        if entry.matches_nvml_name(name):
            return entry
    key = _normalize(name)
    return next((entry for entry in entries if _normalize(entry.name) == key), None)


def catalog_entry(name: str) -> GpuCatalogEntry:
    """The entry a user named (name, alias or NVML name, loosely spelt); an unknown name is a
    UsageError that lists the closest names."""
    key = _normalize(name)
    entry = match_catalog(name) or next((e for e in catalog() if key in e.lookup_keys()), None)
    if entry is not None:
        return entry
    fix = f"name a GPU from the catalog (list: {LIST_COMMAND})"
    starting = _names_starting_with(name)
    if len(starting) > 1:
        raise UsageError(f"GPU {name.strip()!r} is ambiguous: {', '.join(starting)}", fix=fix)
    suggestions = closest_names(name)
    hint = f"; closest: {', '.join(suggestions)}" if suggestions else ""
    raise UsageError(f"unknown GPU {name.strip()!r}{hint}", fix=fix)


def _names_by_key() -> dict[str, str]:
    """Every lookup key (normalised name or alias) -> its entry's name."""
    return {key: entry.name for entry in catalog() for key in entry.lookup_keys()}


def _names_starting_with(name: str) -> list[str]:
    key = _normalize(name)
    return sorted({owner for k, owner in _names_by_key().items() if key and k.startswith(key)})


def closest_names(name: str) -> list[str]:
    """Catalog names close to `name`: those it is a prefix of ('A100' -> both A100s), then difflib's."""
    by_key = _names_by_key()
    close = difflib.get_close_matches(_normalize(name), by_key, n=_MAX_SUGGESTIONS, cutoff=_SUGGESTION_CUTOFF)
    found = _names_starting_with(name) + [by_key[k] for k in close]
    return list(dict.fromkeys(found))[:_MAX_SUGGESTIONS]


# An unlisted card described by its memory and compute capability: "16GiB@8.9", "12GB@8.6:2".
_CUSTOM_GPU = re.compile(r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>GiB|GB|MiB)\s*@\s*(?P<cc>\d{1,2}\.\d)\s*$", re.I)
_UNIT_BYTES = {"gib": BYTES_PER_GIB, "gb": BYTES_PER_GB, "mib": BYTES_PER_MIB}
DESCRIBED_SOURCE = "described on the command line"  # the `source` of a card described, not named
CUSTOM_GPU_FIX = "write MEMORY@COMPUTE[:COUNT] with the memory nvidia-smi shows, e.g. 16GiB@8.9 or 12GB@8.6:2"


def custom_gpu_entry(text: str) -> GpuCatalogEntry | None:
    """'16GiB@8.9' -> an entry for that card (None if `text` is not of that form). The memory is
    taken as NVML's total; CUDA's is that less memory.yaml's margin."""
    match = _CUSTOM_GPU.match(text)
    if match is None:
        return None
    memory_mib = int(float(match["amount"]) * _UNIT_BYTES[match["unit"].casefold()] // BYTES_PER_MIB)
    major = int(match["cc"].split(".")[0])
    if memory_mib <= 0 or memory_mib * BYTES_PER_MIB > MAX_CUSTOM_MEMORY_BYTES or major < MIN_COMPUTE_MAJOR:
        raise UsageError(
            f"GPU {text.strip()!r}: memory must be above 0 and at most {MAX_CUSTOM_MEMORY_BYTES // BYTES_PER_GIB} GiB, "
            f"compute capability at least {MIN_COMPUTE_MAJOR}.0",
            fix=CUSTOM_GPU_FIX,
        )
    cc = match["cc"]
    return GpuCatalogEntry(
        name=f"GPU-{memory_mib}MiB-cc{cc.replace('.', '')}",
        nvml_names=[f"{memory_mib}MiB@{cc}"],
        memory_mib=memory_mib,
        memory_basis="nominal",
        compute_capability=cc,
        architecture="unlisted",
        nvlink=False,
        source=DESCRIBED_SOURCE,
    )


def parse_gpu_spec(spec: str) -> tuple[GpuCatalogEntry, int]:
    """'A100-80GB:8' -> (entry, 8), '16GiB@8.9:2' -> (an unlisted card, 2); the count defaults to 1."""
    name, sep, count_text = spec.strip().partition(":")
    if not name.strip():
        raise UsageError(
            f"GPU {spec!r} has no name", fix=f"write NAME[:COUNT], e.g. L4 or A100-80GB:8 (list: {LIST_COMMAND})"
        )
    count = 1
    if sep:
        count_text = count_text.strip()
        if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_GPU_COUNT:
            raise UsageError(
                f"GPU count {count_text!r} in {spec.strip()!r} is not a whole number from 1 to {MAX_GPU_COUNT}",
                fix="write NAME[:COUNT], e.g. A100-80GB:8",
            )
        count = int(count_text)
    return custom_gpu_entry(name) or catalog_entry(name), count


def inventory_from_catalog(spec: str) -> Inventory:
    """An inventory named, not measured: COUNT identical GPUs of the catalog model NAME."""
    entry, count = parse_gpu_spec(spec)
    gpus = [
        GPU(
            index=i,
            name=entry.name,
            memory_total_bytes=entry.memory_total_bytes,
            compute_capability=entry.compute_capability,
        )
        for i in range(count)
    ]
    basis = "as NVML reports it" if entry.memory_basis == "reported" else "nominal"
    if entry.source == DESCRIBED_SOURCE:
        notes = [
            f"described, not measured: {count}× an unlisted GPU, {entry.memory_mib} MiB each, compute "
            f"{entry.compute_capability}"
        ]
    else:
        notes = [
            f"named, not measured: {count}× {entry.name} from the GPU catalog, {entry.memory_mib} MiB each ({basis})"
        ]
    if count > 1 and entry.nvlink:
        notes.append(f"NVLink between the {entry.name}s is not assumed: measure the machine to know")
    return Inventory(source="catalog", gpus=gpus, notes=notes)
