"""The inventory: what GPUs a machine has (measured, named from the catalog, or read from a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from r4b_deploy.errors import UsageError

BYTES_PER_MIB = 1024**2
BYTES_PER_GIB = 1024**3
BYTES_PER_GB = 1000**3
# NVML's types: an unsigned int device index, unsigned 64-bit byte counts. A file claiming more is
# not a GPU (and 10**400 bytes would overflow the planner's float arithmetic).
MAX_GPU_INDEX = 2**32 - 1
MAX_MEMORY_BYTES = 2**64 - 1
# `gpus --json` of a large machine is a few KB; anything far bigger is the wrong file.
MAX_INVENTORY_FILE_BYTES = 1024**2
# NVML's driver ("550.54.15") and CUDA ("12.4") versions: dotted numbers, which the planner compares
# to choose the vLLM release; bounded, so a hostile file cannot make int() refuse a 5,000-digit part.
DOTTED_VERSION_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$"


def compute_capability_tuple(text: str) -> tuple[int, int]:
    """ "8.9" -> (8, 9): compared as numbers, so 10.0 ranks above 9.0."""
    major, minor = text.split(".")
    return int(major), int(minor)


class GPU(BaseModel):
    """One GPU as the planner sees it. Memory in bytes; compute capability as "major.minor"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, le=MAX_GPU_INDEX)
    name: str
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_bytes: int = Field(gt=0, le=MAX_MEMORY_BYTES)
    memory_free_bytes: int | None = Field(default=None, ge=0, le=MAX_MEMORY_BYTES)
    compute_capability: str = Field(pattern=r"^\d{1,3}\.\d{1,3}$")
    mig_enabled: bool | None = None
    nvlink_active_links: int = Field(default=0, ge=0, le=MAX_GPU_INDEX)

    @property
    def compute_capability_tuple(self) -> tuple[int, int]:
        return compute_capability_tuple(self.compute_capability)


class Inventory(BaseModel):
    """All GPUs of one machine plus the driver facts. `source` says how we know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["nvml", "catalog", "file"]
    driver_version: str | None = Field(default=None, pattern=DOTTED_VERSION_PATTERN)
    cuda_driver_version: str | None = Field(default=None, pattern=DOTTED_VERSION_PATTERN)  # the newest it runs, "12.4"
    gpus: list[GPU]
    # Pairs of GPU indices joined by NVLink, where NVML reports it.
    nvlink_pairs: list[tuple[int, int]] = []
    notes: list[str] = []

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def homogeneous(self) -> bool:
        """All GPUs the same model and size: what tensor parallelism needs."""
        return len({(g.name, g.memory_total_bytes, g.compute_capability) for g in self.gpus}) <= 1

    @property
    def min_memory_total_bytes(self) -> int | None:
        """The smallest GPU's memory: with tensor parallelism every rank gets the same share."""
        return min((g.memory_total_bytes for g in self.gpus), default=None)

    def nvlinked(self, a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) in {(min(p), max(p)) for p in self.nvlink_pairs}


# What to tell a user whose inventory file is missing or broken.
INVENTORY_FILE_FIX = "write it on the GPU machine with: r4b-deploy gpus --json > inventory.json"


def load_inventory_file(path: str | Path) -> Inventory:
    """Read what `r4b-deploy gpus --json` wrote on another machine; any problem is a UsageError.

    The result says source="file"; the file's own source (nvml, catalog) is kept in a note.
    """
    import json

    from pydantic import ValidationError

    from r4b_deploy.datafile import validation_problem

    path = Path(path)
    text = _read_inventory_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"inventory file {path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            fix=INVENTORY_FILE_FIX,
        ) from exc
    except RecursionError as exc:
        raise UsageError(f"inventory file {path} is not an inventory: nested too deep", fix=INVENTORY_FILE_FIX) from exc
    except ValueError as exc:  # Python's limit on the digits of an int (sys.get_int_max_str_digits)
        raise UsageError(
            f"inventory file {path} is not an inventory: a number too long", fix=INVENTORY_FILE_FIX
        ) from exc
    if not isinstance(data, dict):
        raise UsageError(
            f"inventory file {path}: expected a JSON object, found {type(data).__name__}", fix=INVENTORY_FILE_FIX
        )
    measured_by = data.get("source")
    try:
        inventory = Inventory.model_validate({**data, "source": "file"})
    except ValidationError as exc:
        problem = validation_problem(exc)
        message = f"inventory file {path}: field {problem.field!r}: {problem.message}"
        raise UsageError(message, fix=INVENTORY_FILE_FIX) from exc
    _check_consistent(inventory, path)
    origin = f" (measured there by {measured_by})" if measured_by == "nvml" else ""
    return inventory.model_copy(update={"notes": [*inventory.notes, f"read from {path}{origin}"]})


def _read_inventory_text(path: Path) -> str:
    """The file's text, read up to MAX_INVENTORY_FILE_BYTES: a device or a huge file is not read whole."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INVENTORY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise UsageError(f"inventory file {path} not found", fix=INVENTORY_FILE_FIX) from exc
    except OSError as exc:
        raise UsageError(f"cannot read inventory file {path}: {exc.strerror or exc}", fix=INVENTORY_FILE_FIX) from exc
    if len(data) > MAX_INVENTORY_FILE_BYTES:
        raise UsageError(
            f"inventory file {path} is larger than {MAX_INVENTORY_FILE_BYTES // 1024} KiB: not an inventory",
            fix=INVENTORY_FILE_FIX,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"inventory file {path} is not UTF-8 text (byte {exc.start}): not an inventory", fix=INVENTORY_FILE_FIX
        ) from exc


def _check_consistent(inventory: Inventory, path: Path) -> None:
    if not inventory.gpus:
        raise UsageError(f"inventory file {path}: field 'gpus': lists no GPU", fix=INVENTORY_FILE_FIX)
    indices = [g.index for g in inventory.gpus]
    if len(set(indices)) != len(indices):
        raise UsageError(f"inventory file {path}: field 'gpus': GPU indices repeat: {indices}", fix=INVENTORY_FILE_FIX)
    for n, (a, b) in enumerate(inventory.nvlink_pairs):
        if a == b or a not in indices or b not in indices:
            raise UsageError(
                f"inventory file {path}: field 'nvlink_pairs.{n}': ({a}, {b}) is not a pair of listed GPUs",
                fix=INVENTORY_FILE_FIX,
            )
