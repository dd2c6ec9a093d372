"""Golden tests: whole rendered files per profile, compared in full with tests/golden/<case>/.

Regenerate after an intended change with `R4B_UPDATE_GOLDEN=1 pytest tests/unit/render`, then
read the diff. Goldens are machine independent: the folder is a fixed path (render_files is
pure), temporary host inputs read `<TMP>`, the toolkit version `<VERSION>`, and what depends on
the rehearsal scripts (owned by the rehearsal package) `<REHEARSAL-SCRIPT>`, and the manifest's
copy of the Plan `<PLAN>`: its shape is the planner's schema, so it is not goldened; its content
is checked against the very plan that was rendered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from render_plans import golden_cases

from r4b_deploy import __version__
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render.deployment import MANIFEST_NAME, render_files
from r4b_deploy.render.options import RenderOptions

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden"
UPDATE = os.environ.get("R4B_UPDATE_GOLDEN") == "1"
CASES = ["light", "heavy", "tp8", "rehearsal", "light-custom", "replicas", "rehearsal-replicas"]


def _normalise(case: str, files: dict[str, str], tmp: Path, plan: Plan) -> dict[str, str]:
    out = {}
    tag = json.loads(files[MANIFEST_NAME])["image_tag"]
    for name, text in files.items():
        if name.startswith("rehearsal/"):
            continue  # the rehearsal package's scripts, copied verbatim: its own tests cover them
        text = text.replace(str(tmp), "<TMP>")
        if case == "rehearsal":
            text = text.replace(tag, "r4b-deploy/r4b:<REHEARSAL-SCRIPT>")
        if name == MANIFEST_NAME:
            manifest = json.loads(text)
            assert manifest["toolkit_version"] == __version__
            manifest["toolkit_version"] = "<VERSION>"
            # The manifest carries the plan that was rendered, whole (`up`, `status` read it back).
            recorded = json.loads(files[MANIFEST_NAME])["plan"]
            assert recorded == plan.model_dump(mode="json"), f"{case}: the manifest's plan is not the rendered plan"
            assert Plan.model_validate(recorded) == plan
            manifest["plan"] = "<PLAN>"
            for key in manifest["files"]:
                # The scripts, and the files naming the image tag their content is hashed into.
                if key.startswith("rehearsal/") or (case == "rehearsal" and tag in files[key]):
                    manifest["files"][key] = "<REHEARSAL-SCRIPT>"
            text = json.dumps(manifest, indent=2) + "\n"
        out[name] = text
    return out


@pytest.mark.parametrize("case", CASES)
def test_rendered_files_match_golden(case: str, tmp_path: Path) -> None:
    plan, kwargs = golden_cases(tmp_path)[case]
    files = render_files(plan, RenderOptions(**kwargs), Path("/srv/r4b-golden") / case)
    rendered = _normalise(case, files, tmp_path, plan)
    folder = GOLDEN_DIR / case
    if UPDATE:
        if folder.exists():
            for old in folder.rglob("*"):
                if old.is_file():
                    old.unlink()
        for name, text in rendered.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    golden = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(rendered) == sorted(golden), "the set of rendered files changed"
    for name, text in rendered.items():
        assert text == golden[name], f"{case}/{name} differs from its golden (R4B_UPDATE_GOLDEN=1 to accept)"


def test_every_golden_folder_is_a_case(tmp_path: Path) -> None:
    assert sorted(golden_cases(tmp_path)) == sorted(CASES)
    # kubernetes/ holds the Kubernetes render's goldens (test_kubernetes_golden.py).
    assert sorted(p.name for p in GOLDEN_DIR.iterdir() if p.is_dir() and p.name != "kubernetes") == sorted(CASES)
