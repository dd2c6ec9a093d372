"""docs/planner.md's worked numbers are the planner's: the doc fails this test when they drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan

DOC = Path(__file__).resolve().parents[3] / "docs" / "planner.md"
GIB = 1024**3


@pytest.mark.parametrize(
    ("gpu", "profile"), [("L4", None), ("RTX-A6000", None), ("H100-80GB", None), ("A100-40GB:8", "tp8")]
)
def test_worked_numbers_match_the_planner(gpu: str, profile: str | None) -> None:
    """The 8 × A100 column is tp8, forced: by default eight GPUs run eight medium replicas (issue 10)."""
    text = DOC.read_text()
    plan = make_plan(PlanRequest(gpu=gpu, profile=profile))
    m = plan.memory
    assert f"| {plan.profile} " in text
    for figure in (
        f"{m.kv_tokens:,}",
        f"{m.kv_cache_bytes / GIB:.2f}",
        f"{m.budget_bytes / GIB:.2f}",
        f"{m.max_concurrency:g}",
    ):
        assert figure in text, (gpu, figure)
