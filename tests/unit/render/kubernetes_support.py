"""Shared by the Kubernetes render tests: the golden case and the offline validators."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import yaml
from render_plans import heavy_plan
from support import REPO_ROOT, require

from r4b_deploy.planning.plan import Plan
from r4b_deploy.render.kubernetes import render_kubernetes_files
from r4b_deploy.render.kubernetes_values import KubernetesOptions
from r4b_deploy.render.options import RenderOptions

KUBERNETES_VERSION = "1.35.0"  # a recent release kubernetes-validate 1.37.0 bundles
KEDA_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "keda_scaledobject_crd.json"
IMAGE = "registry.example.com/r4b:1.0"
ROUTER_IMAGE = "registry.example.com/vllm-router:0.1.17"


def golden_case() -> tuple[Plan, RenderOptions, KubernetesOptions]:
    """The golden: the heavy tier on an H100 (named from the catalog), 4 replicas."""
    return heavy_plan(), RenderOptions(), KubernetesOptions(image=IMAGE, router_image=ROUTER_IMAGE, replicas=4)


def render(plan: Plan | None = None, **k8s: Any) -> dict[str, str]:
    base_plan, options, _ = golden_case()
    return render_kubernetes_files(plan or base_plan, options, KubernetesOptions(**{"image": IMAGE, **k8s}))


def objects(files: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every YAML document rendered."""
    return [(name, doc) for name, text in files.items() if name.endswith(".yaml") for doc in yaml.safe_load_all(text)]


def one(files: dict[str, str], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in objects(files)
        if doc["kind"] == kind
        and (component is None or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects for {component}"
    return found[0]


def validate_builtin(obj: dict[str, Any]) -> None:
    """kubernetes-validate --strict: unknown fields, wrong types, missing required fields raise."""
    require(importlib.util.find_spec("kubernetes_validate") is not None, "kubernetes-validate (test extra)")
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def keda_fixture() -> dict[str, Any]:
    return json.loads(KEDA_FIXTURE.read_text())


def strict_schema(node: Any) -> Any:
    """The CRD's structural schema as the apiserver's strict field validation reads it: an object
    with listed properties takes no others (kubectl apply validates strictly by default)."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict_schema(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate_scaled_object(obj: dict[str, Any]) -> None:
    """KEDA's published CRD schema (tests/fixtures/keda_scaledobject_crd.json, with its source)."""
    require(importlib.util.find_spec("jsonschema") is not None, "jsonschema (comes with kubernetes-validate)")
    import jsonschema

    crd = keda_fixture()
    assert obj["apiVersion"] == f"{crd['group']}/{crd['version']}" and obj["kind"] == crd["kind"]
    jsonschema.validate(obj, strict_schema(crd["openAPIV3Schema"]))
    spec = obj["spec"]
    # The CRD's one CEL rule (x-kubernetes-validations), which jsonschema cannot run.
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    known = crd["prometheus_trigger_metadata"]
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        keys = set(trigger["metadata"])
        assert set(known["required"]) <= keys, "a required Prometheus trigger key is missing"
        assert keys <= set(known["required"]) | set(known["optional"]), "an unknown Prometheus trigger key"


GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "kubernetes"
