"""`r4b-deploy doctor`: check the host for `up`: driver, CUDA, Docker, NVIDIA runtime, disk, shm, port, HF token.

One line per check with its fix; `--json` for machines. Exit 1 when any check fails.
"""

from __future__ import annotations

from pathlib import Path

import click

from r4b_deploy.cli.options import FolderPath, runtime_option
from r4b_deploy.launch.base import DEFAULT_RUNTIME, RuntimeName

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@click.command("doctor")
@runtime_option(default=DEFAULT_RUNTIME, help="The runtime you will use with `up`.")
@click.option("--rehearsal", is_flag=True, help="Check for the CPU rehearsal (no GPU checks).")
@click.option(
    "--model",
    metavar="NAME|DIR",
    default=None,
    help="The model `up` will serve, as `plan --model` takes it (default: R-4B): sizes the weights' disk check.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="The host port `up` will use  [default: 8000]."
)
@click.option("--public", is_flag=True, help="Check the port on 0.0.0.0 (as `up --public` binds it).")
@click.option("--ipc-host", is_flag=True, help="You will use --ipc-host: the host's /dev/shm must be large enough.")
@click.option(
    "--hf-cache",
    "hf_cache_dir",
    type=FolderPath(),
    default=None,
    help="Where the weights will be downloaded  [default: ~/.cache/huggingface].",
)
@click.option(
    "--hf-token-env", default=None, metavar="NAME", help="Variable holding the HF token  [default: HF_TOKEN]."
)
@click.option("--no-gpu-probe", is_flag=True, help="Do not start a probe container with a GPU request.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(
    runtime: RuntimeName,
    rehearsal: bool,
    model: str | None,
    port: int | None,
    public: bool,
    ipc_host: bool,
    hf_cache_dir: Path | None,
    hf_token_env: str | None,
    no_gpu_probe: bool,
    as_json: bool,
) -> None:
    """Check the host: driver, CUDA, Docker, NVIDIA runtime, disk, shm, port."""
    from r4b_deploy.errors import CheckFailed
    from r4b_deploy.launch.doctor import run_doctor

    report = run_doctor(
        runtime=runtime,
        rehearsal=rehearsal,
        port=port,
        public=public,
        ipc_host=ipc_host,
        hf_cache_dir=hf_cache_dir,
        hf_token_env=hf_token_env,
        probe_gpu_request=not no_gpu_probe,
        model=model,
    )
    if as_json:
        from r4b_deploy.cli.output import print_json

        print_json(report)
    else:
        from r4b_deploy.cli.output import console

        out = console()
        for check in report.checks:
            style = _STYLE[check.status]
            out.print(f"[{style}]{check.status.upper():<4}[/{style}] {check.name:<15}", end=" ")
            out.print(check.message, markup=False, soft_wrap=True)
            if check.fix and check.status in ("fail", "warn"):
                out.print(f"     {'':<15} fix: {check.fix}", markup=False, soft_wrap=True, style="dim")
    if not report.ok:
        failed = [c.name for c in report.checks if c.status == "fail"]
        raise CheckFailed(f"doctor found {report.failed} failure(s): {', '.join(failed)}", fix="see the fixes above")
