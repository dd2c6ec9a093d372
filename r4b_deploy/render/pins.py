"""profiles/vllm.yaml as the renderer reads it: the GPU pins here, the rehearsal section from the
rehearsal harness's own loader (one parser per section)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from r4b_deploy import paths
from r4b_deploy.rehearsal.vllm_cpu import RehearsalProfile, rehearsal_profile

__all__ = ["GpuPins", "RehearsalProfile", "gpu_pins", "rehearsal_profile"]


class GpuPins(BaseModel):
    """profiles/vllm.yaml `gpu:`: the vLLM build for GPU hosts and what it needs from the host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vllm_version: str
    python: str = Field(pattern=r"^3\.[0-9]+$")
    base_image: str
    cuda_runtime: str
    min_driver_version: str
    recommended_driver_version: str
    # /dev/shm for NCCL and vLLM's shared-memory broadcast; the renderer's default when absent.
    shm_size_bytes: int = Field(gt=0)


@lru_cache(maxsize=1)
def gpu_pins() -> GpuPins:
    """The packaged `gpu:` section, read once."""
    from r4b_deploy.datafile import load_data_file

    return load_data_file(GpuPins, paths.profiles_dir() / "vllm.yaml", "the vLLM pins", section="gpu")
