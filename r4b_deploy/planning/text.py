"""How the planner writes numbers in its reasons, warnings and refusals (one format each)."""

from __future__ import annotations

from r4b_deploy.hardware.inventory import BYTES_PER_GB, BYTES_PER_GIB


def gb_text(n_bytes: int | float) -> str:
    """Decimal GB, as GPU vendors and the tiers' minimums state memory: "23.0 GB"."""
    return f"{n_bytes / BYTES_PER_GB:.1f} GB"


def gib_text(n_bytes: int | float) -> str:
    """Binary GiB, as vLLM's startup log states its memory accounting: "20.52 GiB"."""
    return f"{n_bytes / BYTES_PER_GIB:.2f} GiB"


def count_text(value: int) -> str:
    """Token and slot counts with thousands separators: "16,384"."""
    return f"{value:,}"
