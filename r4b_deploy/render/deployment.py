"""Render a Plan into a deployment folder: every file in memory first, then staged and renamed into place.

The parts come from `render/dockerfile.py` (the image and its tag) and `render/compose.py` (how
the container runs); this module assembles them with the manifest and writes the folder. The
folder's layout, its manifest (`Deployment`, `ContainerSpec`) and how it is read back live in
`r4b_deploy.deployment`, the contract between this renderer and the runtimes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from r4b_deploy import __version__
from r4b_deploy.deployment import (
    ARGS_NAME,
    COMPOSE_NAME,
    ENV_FILE_NAME,
    LOCAL_BIND_ADDRESS,
    MANIFEST_NAME,
    WHEELHOUSE_NAME,
    Deployment,
    folder_identity,
    manifest_text,
    modified_files,
    project_name_for,
    read_manifest,
    sha256_hex,
)
from r4b_deploy.errors import EnvironmentProblem, R4BError, UsageError
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render import env as envfile
from r4b_deploy.render.compose import compose_text, deployment_containers
from r4b_deploy.render.dockerfile import render_image
from r4b_deploy.render.options import RenderOptions
from r4b_deploy.render.staging import Staging, file_mode, unchanged, wheel_sizes


def _render(plan: Plan, options: RenderOptions, out_dir: Path) -> tuple[dict[str, str], Deployment]:
    """Every file's text and the Deployment describing them; nothing touches the folder."""
    out = folder_identity(out_dir)
    image = render_image(plan, options)
    model = options.model or plan.vllm.model
    served_model_name = options.served_model_name or plan.vllm.served_model_name
    replicas, router = deployment_containers(
        plan, options, out, image_tag=image.image_tag, model=model, served_model_name=served_model_name
    )
    container = replicas[0]
    files = {
        **image.build_inputs,
        COMPOSE_NAME: compose_text([*replicas, *([router] if router else [])]),
        ARGS_NAME: "".join(f"{arg}\n" for arg in container.command),
    }
    files = dict(sorted(files.items()))
    deployment = Deployment(
        toolkit_version=__version__,
        dir=out,
        project_name=project_name_for(out),
        image_tag=image.image_tag,
        url=f"http://{LOCAL_BIND_ADDRESS}:{options.host_port}",
        env_file=out / ENV_FILE_NAME,
        rehearsal=plan.rehearsal,
        vllm_version=image.vllm_version,
        model=model,
        served_model_name=served_model_name,
        replicas=replicas,
        router=router,
        plan=plan,
        options=options,
        files={name: sha256_hex(text) for name, text in files.items()},
        wheels=image.wheels,
    )
    files[MANIFEST_NAME] = manifest_text(deployment)
    return files, deployment


def render_files(plan: Plan, options: RenderOptions, out_dir: Path | str | None = None) -> dict[str, str]:
    """Every rendered file (path in the folder -> text), the manifest included, without writing.

    Not included: the env file (secrets) and the wheelhouse (binary; listed in the manifest).
    `out_dir` (default: the current directory) names the folder the files are for: the compose
    labels, project name and manifest mention it.
    """
    return _render(plan, options, Path(out_dir) if out_dir is not None else Path.cwd())[0]


# ----------------------------------------------------------------------------- writing a folder


def check_folder_path(out: Path) -> None:
    """A folder path the filesystem cannot hold is the user's to shorten (else ENAMETOOLONG
    surfaces mid-write); the limits are those of the filesystem the folder will be on."""
    existing = next((p for p in (out, *out.parents) if os.path.isdir(p)), Path("/"))
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    for part in out.parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(
                f"the folder name {part[:24]}… is {len(os.fsencode(part))} bytes, longer than the filesystem's "
                f"limit of {name_max}",
                fix="choose a shorter --out",
            )
    # Room for the deepest file inside (rehearsal/…, wheelhouse/…): one more name.
    limit = path_max - name_max - 1
    if len(os.fsencode(str(out))) > limit:
        raise UsageError(
            f"the folder path is {len(os.fsencode(str(out)))} bytes, longer than {limit} (the filesystem's "
            f"{path_max}-byte path limit, less room for the files inside)",
            fix="choose a shorter --out",
        )


def _previous_deployment(out: Path, force: bool) -> Deployment | None:
    """What is in `out` now; refuses to overwrite hand edits or a foreign folder unless forced."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", fix="choose another --out")
    if not out.exists():
        return None
    if not (out / MANIFEST_NAME).exists():
        if any(out.iterdir()) and not force:
            raise UsageError(
                f"{out} is not empty and is not an r4b-deploy folder (no {MANIFEST_NAME})",
                fix="choose an empty or new folder, or add --force to write into it",
            )
        return None
    try:
        previous = read_manifest(out)
    except R4BError:
        if force:
            return None
        raise
    # Compare against this folder even when the manifest was written elsewhere (a moved folder).
    previous = previous.model_copy(update={"dir": out})
    changed = modified_files(previous)
    if changed and not force:
        raise UsageError(
            f"{out}: {', '.join(changed)} changed by hand since the last render",
            fix="add --force to overwrite (save your edits first), or render into another folder",
        )
    return previous


def write_deployment(
    plan: Plan,
    options: RenderOptions,
    out_dir: Path | str,
    force: bool = False,
    *,
    environ: Mapping[str, str] | None = None,
) -> Deployment:
    """Render into `out_dir`: everything in memory first, then temp files renamed into place.

    Re-rendering with the same inputs writes the same bytes and keeps the API key. A folder with
    hand-edited files, or a non-empty folder that is not a deployment, needs `force`. On any
    error the folder is left as it was. `environ` (default os.environ) supplies the HF token.
    """
    out = folder_identity(out_dir)
    check_folder_path(out)
    previous = _previous_deployment(out, force)
    files, deployment = _render(plan, options, out)
    env_values = envfile.env_values(
        envfile.read_existing_env(out / ENV_FILE_NAME) if out.is_dir() else {},
        options.hf_token_env,
        os.environ if environ is None else environ,
    )
    env_text = envfile.render_env_text(env_values)

    staging = Staging(out)
    try:
        staging.ensure_dir(out)
        for name, text in files.items():
            if name == MANIFEST_NAME:
                continue
            if unchanged(out / name, text):
                continue
            staging.add_file(name, text)
        if deployment.wheels and (wheel_sizes(out / WHEELHOUSE_NAME) != deployment.wheels):
            assert options.wheelhouse is not None
            staging.add_linked_dir(WHEELHOUSE_NAME, options.wheelhouse, deployment.wheels)
        env_path = out / ENV_FILE_NAME
        if not unchanged(env_path, env_text) or file_mode(env_path) != envfile.ENV_FILE_MODE:
            staging.add_file(ENV_FILE_NAME, env_text, mode=envfile.ENV_FILE_MODE)
        # The manifest last: until it is renamed, the old manifest still describes the old files.
        if not unchanged(out / MANIFEST_NAME, files[MANIFEST_NAME]):
            staging.add_file(MANIFEST_NAME, files[MANIFEST_NAME])
    except OSError as exc:
        staging.abort()
        raise EnvironmentProblem(
            f"cannot write {out}: {exc.strerror or exc}", fix=f"check the free space and permissions of {out}"
        ) from exc
    except BaseException:
        staging.abort()
        raise
    staging.commit()
    if previous is not None:
        _remove_stale(out, previous, deployment)
    return deployment


def _remove_stale(out: Path, previous: Deployment, current: Deployment) -> None:
    """Files the previous render wrote and this one does not (e.g. rehearsal/ after a GPU re-render)."""
    for name in set(previous.files) - set(current.files):
        path = out / name
        path.unlink(missing_ok=True)
        parent = path.parent
        if parent != out and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    if previous.wheels and not current.wheels:
        shutil.rmtree(out / WHEELHOUSE_NAME, ignore_errors=True)
