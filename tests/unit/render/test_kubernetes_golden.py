"""Golden: the whole Kubernetes set for one plan (heavy tier on an H100, 4 replicas), compared in full.

Regenerate after an intended change with `R4B_UPDATE_GOLDEN=1 pytest tests/unit/render`, then
read the diff (tests/golden/kubernetes/)."""

from __future__ import annotations

import os

from kubernetes_support import GOLDEN_DIR, golden_case

from r4b_deploy.render.kubernetes import TEMPLATES, render_kubernetes_files

CASE = "h100-4-replicas"
UPDATE = os.environ.get("R4B_UPDATE_GOLDEN") == "1"


def test_rendered_manifests_match_golden() -> None:
    plan, options, k8s = golden_case()
    rendered = render_kubernetes_files(plan, options, k8s)
    folder = GOLDEN_DIR / CASE
    if UPDATE:
        for name, text in rendered.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    golden = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(rendered) == sorted(golden) == sorted(TEMPLATES), "the set of rendered files changed"
    for name, text in rendered.items():
        assert text == golden[name], f"kubernetes/{CASE}/{name} differs from its golden (R4B_UPDATE_GOLDEN=1 to accept)"
