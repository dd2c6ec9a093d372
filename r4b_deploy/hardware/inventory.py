"""The inventory: what GPUs a machine has (measured, named from the catalog, or read from a file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BYTES_PER_GIB = 1024**3
BYTES_PER_GB = 1000**3


class GPU(BaseModel):
    """One GPU as the planner sees it. Memory in bytes; compute capability as "major.minor"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    name: str
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_bytes: int = Field(gt=0)
    memory_free_bytes: int | None = Field(default=None, ge=0)
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    mig_enabled: bool | None = None
    nvlink_active_links: int = Field(default=0, ge=0)

    @property
    def compute_capability_tuple(self) -> tuple[int, int]:
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)


class Inventory(BaseModel):
    """All GPUs of one machine plus the driver facts. `source` says how we know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["nvml", "catalog", "file"]
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the newest CUDA the driver supports, "12.4"
    gpus: list[GPU]
    # Pairs of GPU indices joined by NVLink, where NVML reports it.
    nvlink_pairs: list[tuple[int, int]] = []
    notes: list[str] = []
