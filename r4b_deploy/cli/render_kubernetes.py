"""`render --target kubernetes`: its options and what it prints (the command lives in cli/render.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from r4b_deploy.cli.options import F
from r4b_deploy.errors import UsageError

if TYPE_CHECKING:
    from r4b_deploy.planning.plan import Plan
    from r4b_deploy.render.kubernetes import KubernetesRender
    from r4b_deploy.render.options import RenderOptions

TARGETS = ("docker", "kubernetes")
_K8S = "(--target kubernetes)"
_OPTIONS = (
    click.option(
        "--target",
        type=click.Choice(TARGETS),
        default="docker",
        show_default=True,
        help="docker: a folder for one Docker host (Dockerfile, compose file); kubernetes: manifests for a cluster.",
    ),
    click.option("--image", default=None, metavar="REF", help=f"The vLLM image in your registry {_K8S}."),
    click.option("--router-image", default=None, metavar="REF", help=f"vLLM's router image in your registry {_K8S}."),
    click.option("--min-replicas", type=click.IntRange(min=1), default=None, help=f"Autoscaling floor {_K8S}."),
    click.option("--max-replicas", type=click.IntRange(min=1), default=None, help=f"Autoscaling ceiling {_K8S}."),
    click.option(
        "--namespace", default=None, help=f"The namespace of every object {_K8S}  [default: profiles/kubernetes.yaml]."
    ),
    click.option("--prometheus-url", default=None, metavar="URL", help=f"Prometheus for KEDA's trigger {_K8S}."),
    click.option(
        "--gpu-product",
        "gpu_products",
        multiple=True,
        metavar="VALUE",
        help=f"A nvidia.com/gpu.product node label value to schedule on (repeat it) {_K8S}  [default: the plan's GPU].",
    ),
    click.option(
        "--hf-cache-pvc", default=None, metavar="CLAIM", help=f"A PVC for the HF cache {_K8S}  [default: emptyDir]."
    ),
)
KUBERNETES_KEYS = (
    "image",
    "router_image",
    "min_replicas",
    "max_replicas",
    "namespace",
    "prometheus_url",
    "gpu_products",
    "hf_cache_pvc",
)

# Every parameter these options give `render` (and not `up`, which runs on one Docker host).
RENDER_ONLY_PARAMS = ("target", *KUBERNETES_KEYS)


def kubernetes_options(func: F) -> F:
    """Add --target and the Kubernetes options to `render`."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def pop_kubernetes_values(values: dict[str, Any], target: str) -> dict[str, Any]:
    """Take the Kubernetes options out of render's kwargs; refuse them for the docker target.

    `--replicas` is a planning option (replicas on one host); for --target kubernetes it is the
    cluster's replica count instead, so it is taken out here and the plan is made for one replica
    (auto: the tier one engine runs best on its GPUs). auto leaves the count to profiles/kubernetes.yaml."""
    given = {key: values.pop(key) for key in KUBERNETES_KEYS}
    given = {key: value for key, value in given.items() if value not in (None, ())}
    if target != "kubernetes" and given:
        from r4b_deploy.render.kubernetes_values import OPTION_FLAGS

        flags = ", ".join(OPTION_FLAGS[key] for key in given)
        raise UsageError(f"{flags} applies to --target kubernetes", fix="add --target kubernetes, or drop it")
    if target == "kubernetes" and values.get("replicas") is not None:
        given["replicas"] = values.pop("replicas")
    given["gpu_products"] = list(given.get("gpu_products", ()))
    return given


def render_kubernetes(
    plan: Plan, options: RenderOptions, k8s_values: dict[str, Any], out_dir: Path, force: bool, as_json: bool
) -> None:
    from r4b_deploy.cli.output import print_json
    from r4b_deploy.render.kubernetes import write_kubernetes
    from r4b_deploy.render.kubernetes_values import KubernetesOptions

    result = write_kubernetes(plan, options, KubernetesOptions(**k8s_values), out_dir, force=force)
    if as_json:
        print_json(result)
        return
    _print_summary(plan, result)


def _print_summary(plan: Plan, result: KubernetesRender) -> None:
    from rich.markup import escape

    from r4b_deploy.cli.output import console

    out = console()
    counts = result.counts
    out.print(
        f"Rendered [bold]{escape(str(result.dir))}[/bold] (Kubernetes, profile {escape(plan.profile)}): "
        f"{counts.replicas} replicas, autoscaled {counts.min_replicas}..{counts.max_replicas} on queue depth"
    )
    for name in result.files:
        out.print(f"  {name}", markup=False)
    out.print(f"GPU nodes: nvidia.com/gpu.product in {', '.join(result.gpu_products)}", markup=False)
    for warning in plan.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    out.print("Next, on the cluster:")
    out.print(f"  {result.namespace_command}", markup=False, soft_wrap=True)
    out.print("  # the Secret the replicas read (its values come from your shell, never from r4b-deploy):")
    out.print(f"  {result.secret_command}", markup=False, soft_wrap=True)
    for command in result.apply_commands:
        out.print(f"  {command}", markup=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}")
