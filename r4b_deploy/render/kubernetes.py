"""Render a Plan into Kubernetes manifests: vLLM replicas behind vLLM's router, autoscaled on queue depth.

The same plan and the same vLLM arguments (`launch/args.py: vllm_serve_args`) as the Docker
folder: one replica is what `render --target docker` runs, times N. Values are computed and
checked here; `templates/kubernetes/*.j2` only loop and branch. Secrets never reach a manifest:
the pods read the API key and HF token from a Secret the user creates (`secret_command` says how,
with no value in it).

Decisions, read from the parts themselves:
- vLLM's router discovers replicas itself (`--service-discovery --selector ...`: it watches pods
  in the namespace and routes to those Ready and Running, by pod IP; vllm-project/router
  src/service_discovery.rs), so it gets a ServiceAccount with read access to pods, and the vLLM
  Service is for direct access and metrics scraping.
- The API key is enforced by the replicas (VLLM_API_KEY): the router passes the client's
  `Authorization` header through unchanged (seen with vllm-router 0.1.17 and a recording worker).
- Node selection: `nvidia.com/gpu.product` as GPU feature discovery writes it (see
  profiles/kubernetes.yaml), required at scheduling.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from r4b_deploy.errors import EnvironmentProblem, UsageError
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render import validate
from r4b_deploy.render.kubernetes_values import (
    KubernetesOptions,
    ReplicaCounts,
    gpu_products,
    kubernetes_profile,
    quantity_mib,
    replica_counts,
)
from r4b_deploy.render.options import RenderOptions

# What the folder holds: the core objects (`kubectl apply -f DIR` takes exactly these two), one
# of the two autoscalers (a subfolder, so applying DIR never installs both), the router's image.
VLLM_MANIFEST = "vllm.yaml"
ROUTER_MANIFEST = "router.yaml"
KEDA_MANIFEST = "autoscaling/keda-scaledobject.yaml"
HPA_MANIFEST = "autoscaling/hpa.yaml"
ROUTER_DOCKERFILE = "router-image/Dockerfile"
# The file list (`sha256sum -c` reads it): marks the folder as ours for the next render. Not .json or
# .yaml: `kubectl apply -f DIR` would read it as an object.
MARKER_NAME = "r4b-kubernetes.sha256"
TEMPLATES = {
    VLLM_MANIFEST: "kubernetes/vllm.yaml.j2",
    ROUTER_MANIFEST: "kubernetes/router.yaml.j2",
    KEDA_MANIFEST: "kubernetes/keda-scaledobject.yaml.j2",
    HPA_MANIFEST: "kubernetes/hpa.yaml.j2",
    ROUTER_DOCKERFILE: "kubernetes/router.Dockerfile.j2",
}
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource name
API_KEY_KEY = "VLLM_API_KEY"  # keys in the user's Secret; the pods' env names are the same
HF_TOKEN_KEY = "HF_TOKEN"
# Render options that only mean something for one Docker host.
DOCKER_ONLY = {
    "host_port": "--port",
    "public": "--public",
    "wheelhouse": "--wheelhouse",
    "ca_bundle": "--ca-bundle",
    "hf_cache_dir": "--hf-cache",
    "ipc_host": "--ipc-host",
    "ulimits": "--ulimit",
}


class KubernetesRender(BaseModel):
    """What `render --target kubernetes` wrote and what the user runs next."""

    model_config = ConfigDict(frozen=True)

    dir: Path
    files: dict[str, str]  # name -> sha256 of its text
    namespace: str
    image: str
    image_is_default: bool  # the local tag of the GPU image: it must be pushed where the cluster pulls
    router_image: str
    router_image_is_default: bool
    counts: ReplicaCounts
    gpu_products: list[str]
    namespace_command: str
    secret_command: str  # creates the Secret; holds no secret value
    apply_commands: list[str]  # the core objects, then one autoscaler
    notes: list[str]


def _checked_plan(plan: Plan, options: RenderOptions) -> str:
    """The model the replicas serve; refuses what a cluster cannot run from this plan."""
    if plan.rehearsal:
        raise UsageError(
            "render --target kubernetes renders GPU replicas; the CPU rehearsal runs on one Docker host",
            fix="drop --rehearsal, and plan for the cluster's GPU with --gpu NAME",
        )
    given = [flag for key, flag in DOCKER_ONLY.items() if key in options.model_fields_set]
    if given:
        raise UsageError(
            f"{', '.join(given)} applies to --target docker only",
            fix="drop it: the cluster's Services, volumes and security context decide these",
        )
    model = options.model or plan.vllm.model
    if not validate.HF_MODEL_ID.fullmatch(model):
        raise UsageError(
            f"the replicas download the model by its Hugging Face id; {model!r} is a local folder",
            fix="plan a model by its Hugging Face id (--model OWNER/NAME or a name from profiles/models)",
        )
    return model


def _default_image(plan: Plan, options: RenderOptions) -> str:
    """The tag `render`/`up` give the GPU image of this very plan (content-addressed)."""
    from r4b_deploy.deployment import MANIFEST_NAME
    from r4b_deploy.render.deployment import render_files

    return json.loads(render_files(plan, options)[MANIFEST_NAME])["image_tag"]


def _probe_budgets() -> dict[str, int]:
    """The Docker health check's own numbers (one fact): the startup probe allows as long as the
    container's start period, which covers downloading and loading the model."""
    from r4b_deploy.render import dockerfile

    return {
        "period_s": dockerfile.HEALTH_INTERVAL_S,
        "timeout_s": dockerfile.HEALTH_TIMEOUT_S,
        "failure_threshold": dockerfile.HEALTH_RETRIES,
        "startup_failure_threshold": math.ceil(dockerfile.GPU_HEALTH_START_PERIOD_S / dockerfile.HEALTH_INTERVAL_S),
    }


def _context(plan: Plan, options: RenderOptions, k8s: KubernetesOptions, image: str) -> dict[str, Any]:
    from r4b_deploy.launch.args import CONTAINER_PORT
    from r4b_deploy.pins import gpu_pins
    from r4b_deploy.render.compose import container_command
    from r4b_deploy.render.dockerfile import CONTAINER_HF_HOME
    from r4b_deploy.render.router import router_args as make_router_args

    profile = kubernetes_profile()
    model = _checked_plan(plan, options)
    served = options.served_model_name or plan.vllm.served_model_name
    args = container_command(plan, options, model, served)
    namespace = k8s.namespace or profile.namespace
    app, router = profile.app_name, profile.router
    tp = plan.vllm.tensor_parallel_size
    shm_bytes = options.shm_size_bytes or gpu_pins(plan.vllm_version).shm_size_bytes
    memory_request = plan.memory.weights_bytes + profile.vllm.host_memory_overhead_bytes
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/managed-by": "r4b-deploy"}
    vllm_selector = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "vllm"}
    router_selector = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "router"}
    router_args = make_router_args(
        router,
        discovery=[
            "--service-discovery",
            "--selector", *(f"{k}={v}" for k, v in vllm_selector.items()),
            "--service-discovery-port", str(CONTAINER_PORT),
            "--service-discovery-namespace", namespace,
        ],
    )  # fmt: skip
    counts = replica_counts(k8s, profile)
    scaling = profile.autoscaling
    return {
        "namespace": namespace,
        "app": app,
        "vllm_selector": vllm_selector,
        "router_selector": router_selector,
        "vllm_labels": labels | vllm_selector,
        "router_labels": labels | router_selector,
        "vllm_name": f"{app}-vllm",
        "router_name": f"{app}-router",
        "secret_name": profile.secret_name,
        "api_key_key": API_KEY_KEY,
        "hf_token_key": HF_TOKEN_KEY,
        "image": image,
        "vllm_args": args,
        "container_port": CONTAINER_PORT,
        "served_model_name": served,
        "counts": counts,
        "gpu_resource": GPU_RESOURCE,
        "gpu_count": tp,
        "gpu_product_label": profile.gpu_product_label,
        "gpu_products": list(k8s.gpu_products) or gpu_products(plan, profile),
        "cpu_request": str(profile.vllm.cpus_base + profile.vllm.cpus_per_gpu * tp),
        "memory_request": quantity_mib(memory_request),
        # A memory-backed emptyDir counts against the container's memory limit: /dev/shm on top.
        "memory_limit": quantity_mib(memory_request + shm_bytes),
        "shm_size": quantity_mib(shm_bytes),
        "hf_home": CONTAINER_HF_HOME,
        "hf_cache_pvc": k8s.hf_cache_pvc,
        "hf_cache_size": quantity_mib(int(plan.memory.weights_bytes * profile.vllm.hf_cache_weights_factor)),
        "termination_grace_s": profile.vllm.termination_grace_s,
        "probe": _probe_budgets(),
        "router": router,
        "router_image": k8s.router_image or f"r4b-deploy/vllm-router:{router.version}",
        "router_args": router_args,
        "router_memory_request": quantity_mib(router.memory_request_bytes),
        "router_memory_limit": quantity_mib(router.memory_limit_bytes),
        "prometheus_url": k8s.prometheus_url or scaling.prometheus_url,
        "queue_query": f'sum({scaling.vllm_metric}{{model_name="{served}"}})',
        "queue_target": scaling.waiting_requests_per_replica,
        "vllm_metric": scaling.vllm_metric,
        "adapter_metric": scaling.adapter_metric,
    }


def render_kubernetes_files(
    plan: Plan, options: RenderOptions, k8s: KubernetesOptions, *, image: str | None = None
) -> dict[str, str]:
    """Every file's text (name in the folder -> text); nothing is written. `image`: the vLLM
    image when --image is not given (default: the GPU image's local tag for this plan)."""
    from r4b_deploy.render.jinja import render_template

    _checked_plan(plan, options)
    context = _context(plan, options, k8s, k8s.image or image or _default_image(plan, options))
    return {name: render_template(template, **context) for name, template in TEMPLATES.items()}


def secret_command(namespace: str, secret_name: str, hf_token_env: str, environ: Mapping[str, str]) -> str:
    """The `kubectl create secret` the user runs: values come from the shell, never from us.

    The API key is generated by the user's shell; the HF token is referenced by its variable
    only when that variable is set here (R-4B is public; a gated model needs it)."""
    parts = [
        f"kubectl -n {namespace} create secret generic {secret_name}",
        f"--from-literal={API_KEY_KEY}=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"",
    ]
    if environ.get(hf_token_env):
        parts.append(f'--from-literal={HF_TOKEN_KEY}="${hf_token_env}"')
    return " \\\n    ".join(parts)


def _check_previous(out: Path) -> None:
    """Refuse a foreign non-empty folder, and files changed by hand since the last render (the
    listing's digests): re-rendering would overwrite the edits."""
    from r4b_deploy.deployment import sha256_hex

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", fix="choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        listing = (out / MARKER_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise UsageError(
            f"{out} is not empty and holds no earlier Kubernetes render ({MARKER_NAME})",
            fix="choose an empty or new folder, or add --force to write into it",
        ) from None
    changed = []
    for line in listing.splitlines():
        digest, _, name = line.partition("  ")
        try:
            if sha256_hex((out / name).read_text(encoding="utf-8")) != digest:
                changed.append(name)
        except (OSError, UnicodeDecodeError):
            continue  # deleted since: rendering puts it back
    if changed:
        raise UsageError(
            f"{out}: {', '.join(changed)} changed by hand since the last render",
            fix="add --force to overwrite (save your edits first), or render into another folder",
        )


def write_kubernetes(
    plan: Plan,
    options: RenderOptions,
    k8s: KubernetesOptions,
    out_dir: Path | str,
    force: bool = False,
    *,
    environ: Mapping[str, str] | None = None,
) -> KubernetesRender:
    """Render into `out_dir` (each file written atomically). A non-empty folder that is not a
    previous Kubernetes render needs `force`."""
    from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic
    from r4b_deploy.deployment import folder_identity, sha256_hex
    from r4b_deploy.render.deployment import check_folder_path

    out = folder_identity(out_dir)
    check_folder_path(out)
    if not force:
        _check_previous(out)
    profile = kubernetes_profile()
    _checked_plan(plan, options)  # before the default image renders the Docker files
    image = k8s.image or _default_image(plan, options)
    files = render_kubernetes_files(plan, options, k8s, image=image)
    digests = {name: sha256_hex(text) for name, text in sorted(files.items())}
    try:
        for name, text in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / name, text, mode=REPORT_FILE_MODE)
        listing = "".join(f"{digest}  {name}\n" for name, digest in digests.items())
        write_text_atomic(out / MARKER_NAME, listing, mode=REPORT_FILE_MODE)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write {out}: {exc.strerror or exc}", fix=f"check the free space and permissions of {out}"
        ) from exc
    namespace = k8s.namespace or profile.namespace
    counts = replica_counts(k8s, profile)
    router_image = k8s.router_image or f"r4b-deploy/vllm-router:{profile.router.version}"
    notes = [
        f"autoscaling: apply ONE of {KEDA_MANIFEST} (KEDA) or {HPA_MANIFEST} (prometheus-adapter; its rule is "
        "in the file's header)",
    ]
    advice = plan.replicas
    if plan.vllm.tensor_parallel_size > 1 and advice is not None and advice.prefer_replicas:
        notes.append(
            f"each replica takes {plan.vllm.tensor_parallel_size} GPUs (tensor parallel), yet the plan says "
            f"one-GPU replicas serve more ({advice.summary.rstrip('.')}): plan one GPU per replica, e.g. --gpu NAME:1"
        )
    if k8s.image is None:
        notes.append(
            f"{image} is the local tag of the GPU image: build it (r4b-deploy render --out BUILD with the same "
            "planning options, then docker build -t REGISTRY/r4b:TAG BUILD), push it, and re-render with --image"
        )
    if k8s.router_image is None:
        notes.append(
            f"{router_image} is a local name: docker build -t REGISTRY/vllm-router:{profile.router.version} "
            f"{shlex.quote(str(out / 'router-image'))}, push it, and re-render with --router-image"
        )
    return KubernetesRender(
        dir=out,
        files=digests,
        namespace=namespace,
        image=image,
        image_is_default=k8s.image is None,
        router_image=router_image,
        router_image_is_default=k8s.router_image is None,
        counts=counts,
        gpu_products=list(k8s.gpu_products) or gpu_products(plan, profile),
        secret_command=secret_command(
            namespace, profile.secret_name, options.hf_token_env, os.environ if environ is None else environ
        ),
        namespace_command=f"kubectl create namespace {namespace}",
        apply_commands=[
            f"kubectl apply -f {shlex.quote(str(out))}",
            f"kubectl apply -f {shlex.quote(str(out / KEDA_MANIFEST))}",
        ],
        notes=notes,
    )
