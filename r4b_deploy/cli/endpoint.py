"""Which endpoint `smoke` and `bench` talk to: `--url`, `--api-key`, `--env-file`, `--deployment`.

One resolution for both commands, so a key is found the same way everywhere: an explicit
`--api-key` (or VLLM_API_KEY) first, else the env file `render` wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import click

from r4b_deploy.cli.options import FolderPath
from r4b_deploy.errors import UsageError


class EndpointTarget(NamedTuple):
    url: str
    served_model_name: str | None
    api_key: str | None
    max_num_seqs: int | None  # the plan's cap, when a deployment folder says it


def endpoint_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url, --api-key, --env-file and --deployment (kwargs: url, api_key, env_file, deployment_dir)."""
    for option in reversed(
        [
            click.option("--url", help="The endpoint, e.g. http://127.0.0.1:8000 (default: the --deployment's URL)."),
            click.option(
                "--api-key",
                envvar="VLLM_API_KEY",
                show_envvar=True,
                help="API key (prefer the env var or --deployment: options show up in `ps`).",
            ),
            click.option(
                "--env-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Read VLLM_API_KEY from this KEY=VALUE file.",
            ),
            click.option(
                "--deployment",
                "deployment_dir",
                type=FolderPath(file_okay=False),
                help="A folder written by `r4b-deploy render`: its URL, served name, API key and max_num_seqs.",
            ),
        ]
    ):
        func = option(func)
    return func


def resolve_endpoint(
    url: str | None,
    served_model_name: str | None,
    api_key: str | None,
    env_file: Path | None,
    deployment_dir: Path | None,
) -> EndpointTarget:
    """Explicit values win; a deployment folder or an env file fills in the rest."""
    max_num_seqs: int | None = None
    if env_file is not None and deployment_dir is not None:
        raise UsageError("--env-file and --deployment exclude each other", fix="give one of them")
    if deployment_dir is not None:
        from r4b_deploy.deployment import load_deployment, read_env_file
        from r4b_deploy.render.env import API_KEY_VAR

        deployment = load_deployment(deployment_dir)
        url = url or deployment.url
        served_model_name = served_model_name or deployment.served_model_name
        api_key = api_key or read_env_file(deployment_dir).get(API_KEY_VAR)
        max_num_seqs = deployment.plan.vllm.max_num_seqs
    elif env_file is not None:
        api_key = _key_from_env_file(env_file)
    if not url:
        raise UsageError("no endpoint given", fix="pass --url http://HOST:PORT or --deployment DIR")
    from r4b_deploy.client.urls import check_endpoint_url

    check_endpoint_url(url)
    if api_key:
        _check_api_key(api_key)
    return EndpointTarget(url, served_model_name, api_key, max_num_seqs)


def _check_api_key(key: str) -> None:
    """A key goes into an `Authorization` header: visible ASCII only (never quoted back)."""
    bad = next((i for i, ch in enumerate(key) if not (ch.isascii() and ch.isprintable()) or ch.isspace()), None)
    if bad is not None:
        raise UsageError(
            f"the API key has a character an HTTP header cannot carry (at position {bad + 1} of {len(key)})",
            fix="check the key given by --api-key, VLLM_API_KEY or the env file",
        )


def _key_from_env_file(path: Path) -> str:
    from r4b_deploy.render.env import API_KEY_VAR, parse_env_text

    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", fix="check the path and its permissions") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not a text env file (byte {exc.start} is not UTF-8)",
            fix="use the env file `r4b-deploy render` wrote",
        ) from None
    key = parse_env_text(text, str(path)).get(API_KEY_VAR)
    if not key:
        raise UsageError(f"{path} has no {API_KEY_VAR}", fix="use the env file `r4b-deploy render` wrote")
    return key
