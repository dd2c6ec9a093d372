"""`r4b-deploy render`: plan, then write the deployment folder (Dockerfile, compose, env file, manifest)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from r4b_deploy.cli.options import F, FolderPath, plan_request_from, planning_options
from r4b_deploy.cli.render_kubernetes import kubernetes_options, pop_kubernetes_values
from r4b_deploy.errors import UsageError

if TYPE_CHECKING:
    from r4b_deploy.deployment import Deployment
    from r4b_deploy.render.options import RenderOptions


def parse_ulimits(values: tuple[str, ...]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in values:
        name, sep, limit = item.partition("=")
        try:
            limits[name] = int(limit)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"--ulimit: expected NAME=VALUE such as nofile=65536, got {item!r}")
    return limits


# render's own options, shared with `up` (the same option objects: the two never drift apart).
_RENDER_OPTIONS = (
    click.option("--port", "host_port", type=int, default=None, help="Host port for the API  [default: 8000]."),
    click.option("--public", is_flag=True, help="Publish on 0.0.0.0 instead of 127.0.0.1 (the API key still applies)."),
    click.option("--base-image", default=None, help="Base image  [default: profiles/vllm.yaml gpu.base_image]."),
    click.option(
        "--ca-bundle",
        type=click.Path(path_type=Path),
        default=None,
        help="Extra PEM CA bundle, trusted in the image from the first step (TLS-inspecting proxies).",
    ),
    click.option(
        "--wheelhouse",
        type=FolderPath(),
        default=None,
        help="Folder of wheels to install vLLM from, offline (linked into the folder).",
    ),
    click.option(
        "--hf-cache",
        "hf_cache_dir",
        type=FolderPath(),
        default=None,
        help="Host Hugging Face cache mounted into the container  [default: ~/.cache/huggingface].",
    ),
    click.option(
        "--hf-token-env",
        default=None,
        metavar="NAME",
        help="Environment variable holding the HF token; copied into r4b.env only  [default: HF_TOKEN].",
    ),
    click.option("--served-model-name", default=None, help="The model name clients send  [default: the plan's]."),
    click.option(
        "--extra-vllm-arg",
        "extra_vllm_args",
        multiple=True,
        metavar="ARG",
        help="One more argument for `vllm serve` (repeat it; e.g. --extra-vllm-arg=--enforce-eager).",
    ),
    click.option("--shm-size", "shm_size_bytes", default=None, metavar="SIZE", help="/dev/shm size, e.g. 16g."),
    click.option("--ipc-host", is_flag=True, help="Share the host's IPC namespace instead of a private /dev/shm."),
    click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=VALUE", help="A container ulimit (repeatable)."),
)
# The kwargs those options give (the RenderOptions field names).
RENDER_KEYS = (
    "host_port",
    "public",
    "base_image",
    "ca_bundle",
    "wheelhouse",
    "hf_cache_dir",
    "hf_token_env",
    "served_model_name",
    "extra_vllm_args",
    "shm_size_bytes",
    "ipc_host",
    "ulimits",
)


def render_options(func: F) -> F:
    """Add render's options (port, image, model, secrets, container limits) to a command (render, up)."""
    for option in reversed(_RENDER_OPTIONS):
        func = option(func)
    return func


def render_options_from(values: dict[str, Any]) -> RenderOptions:
    """Pop render's keys out of a command's kwargs into RenderOptions (the command's own keys stay
    in `values`); options left out keep the library's defaults."""
    from r4b_deploy.render.options import RenderOptions

    given = {key: values.pop(key) for key in RENDER_KEYS if key in values}
    given["extra_vllm_args"] = list(given.get("extra_vllm_args") or ())
    given["ulimits"] = parse_ulimits(tuple(given.get("ulimits") or ()))
    return RenderOptions(**{k: v for k, v in given.items() if _given(v)})


def _given(value: Any) -> bool:
    """A value the user gave: not None, not an unset flag, not an empty repeatable option (port 0 is given)."""
    return value is not None and value is not False and not (isinstance(value, (list, dict)) and not value)


@click.command("render")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=FolderPath(),
    help="The deployment folder to write (created if missing).",
)
@planning_options
@render_options
@kubernetes_options
@click.option("--force", is_flag=True, help="Overwrite hand-edited files, or write into a non-deployment folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the Deployment as JSON.")
def command(out_dir: Path, force: bool, as_json: bool, target: str, **values: Any) -> None:
    """Write the deployment folder (Dockerfile, compose file, env file, manifest), or with
    --target kubernetes the cluster's manifests."""
    from r4b_deploy.cli.output import print_json
    from r4b_deploy.planning.planner import make_plan
    from r4b_deploy.render.deployment import write_deployment

    k8s_values = pop_kubernetes_values(values, target)
    options = render_options_from(values)
    plan = make_plan(plan_request_from(**values))
    if target == "kubernetes":
        from r4b_deploy.cli.render_kubernetes import render_kubernetes

        render_kubernetes(plan, options, k8s_values, out_dir, force, as_json)
        return
    deployment = write_deployment(plan, options, out_dir, force=force)
    if as_json:
        print_json(deployment)
        return
    _print_summary(deployment)


def _print_summary(deployment: Deployment) -> None:
    from rich.markup import escape
    from rich.table import Table

    from r4b_deploy.cli.output import console

    out = console()
    plan = deployment.plan
    kind = "CPU rehearsal" if deployment.rehearsal else f"profile {plan.profile}"
    out.print(f"Rendered [bold]{escape(str(deployment.dir))}[/bold] ({kind}, image {deployment.image_tag})")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("file")
    table.add_column("sha256", style="dim")
    for name, digest in deployment.files.items():
        table.add_row(name, digest[:12])
    table.add_row("r4b.env", "secrets, mode 0600")
    table.add_row("r4b-deploy.json", "manifest")
    if deployment.wheels:
        table.add_row("wheelhouse/", f"{len(deployment.wheels)} wheels")
    out.print(table)
    for warning in plan.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    out.print("vLLM command (in the container):")
    out.print(f"  {shlex.join(deployment.vllm_command)}", markup=False, soft_wrap=True)
    out.print(f"API key stored in {deployment.env_file} (0600)", markup=False)
    if deployment.options.public:
        out.print(
            f"[yellow]note:[/yellow] --public: port {deployment.container.host_port} is published on all "
            "interfaces; every /v1 request needs the API key"
        )
    out.print(f"Serves {deployment.served_model_name!r} at {deployment.url} once started:", markup=False)
    out.print(
        f"  docker compose -p {deployment.project_name} -f {shlex.quote(str(deployment.compose_file))} up -d --build",
        markup=False,
        soft_wrap=True,
    )
    out.print("  (compose v1: docker-compose with the same arguments)", markup=False)
