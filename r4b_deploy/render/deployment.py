"""Render a Plan into a deployment folder (files in memory first, then staged and renamed into place).

The folder's layout, its manifest (`Deployment`, `ContainerSpec`) and how it is read back live in
`r4b_deploy.deployment`, the contract between this renderer and the runtimes; this module is the
writing side. vLLM's flags are given at run time (compose `command:`,
`Deployment.container.command`), never baked into the image: a change of flags or profile keeps
the image tag and rebuilds nothing. The image tag hashes the Dockerfile and every build-context
input, so identical inputs give the same tag and a launcher can skip the build when the image exists.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from r4b_deploy import __version__
from r4b_deploy.deployment import (
    ARGS_NAME,
    CA_BUNDLE_NAME,
    COMPOSE_NAME,
    DOCKERFILE_NAME,
    DOCKERIGNORE_NAME,
    ENV_FILE_NAME,
    LABEL_DIR,
    LABEL_PROFILE,
    LABEL_PROJECT,
    LOCAL_BIND_ADDRESS,
    MANIFEST_NAME,
    PUBLIC_BIND_ADDRESS,
    REHEARSAL_DIR_NAME,
    WHEELHOUSE_NAME,
    ContainerSpec,
    Deployment,
    HealthSettings,
    VolumeMount,
    folder_identity,
    manifest_text,
    modified_files,
    project_name_for,
    read_manifest,
    sha256_hex,
)
from r4b_deploy.errors import ConfigError, EnvironmentProblem, R4BError, UsageError
from r4b_deploy.launch.args import CONTAINER_HOST, CONTAINER_PORT, vllm_serve_args
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render import env as envfile
from r4b_deploy.render import validate
from r4b_deploy.render.options import RenderOptions
from r4b_deploy.render.staging import Staging, file_mode, unchanged, wheel_sizes

REHEARSAL_SCRIPTS = ("fix_vllm_cpu.py", "tiny_model.py")
_REHEARSAL_SOURCE_DIR = Path(__file__).resolve().parent.parent / "rehearsal"

IMAGE_REPOSITORY = "r4b-deploy/r4b"
IMAGE_TAG_HEX = 12

VENV_DIR = "/opt/venv"
SCRIPTS_DIR = "/opt/r4b"
CONTAINER_HF_HOME = "/root/.cache/huggingface"
CA_BUNDLE_TARGET = "/usr/local/share/ca-certificates/r4b-extra.crt"  # update-ca-certificates reads *.crt here
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
ENTRYPOINT = (f"{VENV_DIR}/bin/vllm", "serve")

# The OS packages of each flavour. The real base image has no Python (and no curl): `python{v}` is the
# flavour's pinned Python from the distribution's packages, a name both Ubuntu 22.04 and Debian bookworm
# ship; every name must be in profiles/base-image.yaml `installable` (a unit test checks it).
GPU_APT_PACKAGES = ("python{v}", "python{v}-venv", "python{v}-dev", "libnuma1", "curl", "ca-certificates")
REHEARSAL_APT_PACKAGES = ("python{v}", "python{v}-venv", "libnuma1", "curl", "ca-certificates")

# Docker health check. start_period is long: the first start downloads ~10 GB of weights and
# captures CUDA graphs; failures in that window do not count, and the first success ends it.
HEALTH_INTERVAL_S = 10
HEALTH_TIMEOUT_S = 5
HEALTH_RETRIES = 3
GPU_HEALTH_START_PERIOD_S = 1800
REHEARSAL_HEALTH_START_PERIOD_S = 600


# ----------------------------------------------------------------------------- pure rendering


def _wheel_listing(wheelhouse: Path | None) -> dict[str, int]:
    """name -> size of the wheels to ship; 876 MB of them are never read, only listed."""
    if wheelhouse is None:
        return {}
    try:
        wheels = {p.name: p.stat().st_size for p in wheelhouse.glob("*.whl") if p.is_file()}
    except OSError as exc:
        raise UsageError(f"--wheelhouse: cannot list {wheelhouse}: {exc.strerror}") from exc
    if not wheels:
        raise UsageError(f"--wheelhouse: {wheelhouse} holds no .whl file", fix="point it at a pip download folder")
    for name in wheels:
        bad = validate.unsafe_character(name)
        if bad is not None:
            raise UsageError(f"--wheelhouse: the file name {name!r} contains {bad}", fix="rename or remove that file")
    return dict(sorted(wheels.items()))


def _container_command(plan: Plan, options: RenderOptions, model: str, served_model_name: str) -> list[str]:
    """The plan's settings as `vllm serve` arguments, listening on the container's port."""
    command = vllm_serve_args(
        plan.vllm,
        model=model,
        served_model_name=served_model_name,
        host=CONTAINER_HOST,
        port=CONTAINER_PORT,
        extra_args=options.extra_vllm_args,
    )
    for arg in command:
        if any(not c.isprintable() or c.isspace() for c in arg) or "$" in arg:
            raise UsageError(
                f"the plan's vLLM argument {arg!r} contains whitespace, a control character or `$`",
                fix="re-plan: r4b-deploy plan --json shows the arguments",
            )
    return command


def _dockerfile_context(
    plan: Plan, options: RenderOptions, vllm_version: str, ca_bundle: bool, wheels: Mapping[str, int]
) -> dict[str, Any]:
    from r4b_deploy.pins import gpu_pins, rehearsal_profile

    health = _health(plan.rehearsal)
    context: dict[str, Any] = {
        "rehearsal": plan.rehearsal,
        "base_image": options.base_image,
        "ca_bundle": ca_bundle,
        "ca_bundle_target": CA_BUNDLE_TARGET,
        "system_ca_file": SYSTEM_CA_FILE,
        "wheelhouse": bool(wheels),
        "venv_dir": VENV_DIR,
        "hf_home": CONTAINER_HF_HOME,
        "container_port": CONTAINER_PORT,
        "health": health,
        "entrypoint": list(ENTRYPOINT),
        "vllm_version": vllm_version,
    }
    if plan.rehearsal:
        profile = rehearsal_profile()
        for requirement in profile.packages:
            _check_profile_value("rehearsal.packages", requirement, validate.PINNED_REQUIREMENT)
        for project in profile.uninstall:
            _check_profile_value("rehearsal.uninstall", project, validate.ENV_VALUE)
        for key, value in profile.env.items():
            _check_profile_value("rehearsal.env", key, validate.ENV_NAME)
            _check_profile_value("rehearsal.env", value, validate.ENV_VALUE)
        context |= {
            "python": f"python{profile.min_python}",
            "python_version": profile.min_python,
            # The distribution's pip installs the wheelhouse offline (verified: bookworm's pip 23);
            # a pip wheel in the wheelhouse upgrades it first, as for the GPU image.
            "upgrade_pip": any(name.startswith("pip-") for name in wheels),
            "apt_packages": [p.format(v=profile.min_python) for p in REHEARSAL_APT_PACKAGES],
            "requirements": list(profile.packages),
            "uninstall": list(profile.uninstall),
            "rehearsal_env": dict(profile.env),
            "vllm_package": profile.vllm_package,
            "scripts_dir": SCRIPTS_DIR,
            "fix_script": f"{REHEARSAL_DIR_NAME}/{REHEARSAL_SCRIPTS[0]}",
            "tiny_model_script": f"{REHEARSAL_DIR_NAME}/{REHEARSAL_SCRIPTS[1]}",
            "model_dir": _rehearsal_model_dir(plan),
            "labels": {
                "org.opencontainers.image.title": "R-4B rehearsal on vLLM CPU (r4b-deploy)",
                "io.r4b-deploy.flavour": "rehearsal",
                "io.r4b-deploy.vllm-package": profile.vllm_package,
            },
        }
    else:
        pins = gpu_pins(vllm_version)  # the plan's release, with the CUDA runtime and driver it needs
        for requirement in pins.requirements:
            _check_profile_value(f"gpu.releases[{vllm_version}]", requirement, validate.PINNED_REQUIREMENT)
        context |= {
            "python": f"python{pins.python}",
            "python_version": pins.python,
            "apt_packages": [p.format(v=pins.python) for p in GPU_APT_PACKAGES],
            "requirements": list(pins.requirements),
            # Ubuntu 22.04's pip (22.0) predates vLLM's dependency tree; offline only if the wheelhouse has pip.
            "upgrade_pip": not wheels or any(name.startswith("pip-") for name in wheels),
            "cuda_runtime": pins.cuda_runtime,
            "cuda_major": pins.cuda_runtime.split(".")[0],
            "min_driver_version": pins.min_driver_version,
            "recommended_driver_version": pins.recommended_driver_version,
            "labels": {
                "org.opencontainers.image.title": "R-4B on vLLM (r4b-deploy)",
                "io.r4b-deploy.flavour": "gpu",
                "io.r4b-deploy.vllm-version": vllm_version,
                "io.r4b-deploy.cuda-runtime": pins.cuda_runtime,
                "io.r4b-deploy.min-driver-version": pins.min_driver_version,
                "io.r4b-deploy.recommended-driver-version": pins.recommended_driver_version,
            },
        }
    return context


def _check_profile_value(field: str, value: str, pattern: Any) -> None:
    if validate.problem(value, pattern, "a plain value") is not None:
        raise ConfigError(f"profiles/vllm.yaml {field}: {value!r} is not a safe value to render")


def _rehearsal_model_dir(plan: Plan) -> str:
    """Where the image builds the tiny model: the path the rehearsal plan serves."""
    reason = validate.problem(plan.vllm.model, validate.ABSOLUTE_PATH, "an absolute path")
    if reason is not None:
        raise ConfigError(
            f"the rehearsal plan's model {reason}", fix="check profiles/tiers (the rehearsal tier's model)"
        )
    return plan.vllm.model


def _gpu_request(plan: Plan) -> dict[str, Any]:
    """The GPUs the container reserves: the plan's own indices (NVML order, as Docker counts them)."""
    if plan.rehearsal:
        return {}
    if plan.gpu_indices:
        return {"gpu_device_ids": [str(i) for i in plan.gpu_indices]}
    return {"gpu_count": plan.vllm.tensor_parallel_size}


def _health(rehearsal: bool) -> HealthSettings:
    return HealthSettings(
        url=f"http://127.0.0.1:{CONTAINER_PORT}/health",
        interval_s=HEALTH_INTERVAL_S,
        timeout_s=HEALTH_TIMEOUT_S,
        start_period_s=REHEARSAL_HEALTH_START_PERIOD_S if rehearsal else GPU_HEALTH_START_PERIOD_S,
        retries=HEALTH_RETRIES,
    )


def _shm_size_bytes(plan: Plan, options: RenderOptions) -> int | None:
    from r4b_deploy.pins import gpu_pins, rehearsal_profile

    if options.ipc_host:
        return None
    if options.shm_size_bytes is not None:
        return options.shm_size_bytes
    if plan.rehearsal:
        return rehearsal_profile().shm_size_bytes
    return gpu_pins().shm_size_bytes


def _resolve_vllm_version(plan: Plan) -> str:
    """The release the plan chose (profiles/vllm.yaml; see its reasons); a plan from before the
    pins became a table gets the default."""
    from r4b_deploy.pins import gpu_pins, rehearsal_profile

    if plan.rehearsal:
        cpu = rehearsal_profile().vllm_version
        if plan.vllm_version not in (None, cpu):
            raise UsageError(
                f"--vllm-version applies to GPU images; the rehearsal installs vLLM's CPU build {cpu}",
                fix="drop --vllm-version (the rehearsal's pins are profiles/vllm.yaml rehearsal.packages)",
            )
        return cpu
    return gpu_pins(plan.vllm_version).vllm_version  # a release not in the table: UsageError with the list


def _read_text_input(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc}", fix=f"check {path}") from exc


def _render(plan: Plan, options: RenderOptions, out_dir: Path) -> tuple[dict[str, str], Deployment]:
    """Every file's text and the Deployment describing them; nothing touches the folder."""
    from r4b_deploy.render.jinja import render_template

    out = folder_identity(out_dir)
    vllm_version = _resolve_vllm_version(plan)
    wheels = _wheel_listing(options.wheelhouse)

    # Build-context inputs beside the Dockerfile: copied files first, they are hashed into the tag.
    context_files: dict[str, str] = {}
    if options.ca_bundle is not None:
        context_files[CA_BUNDLE_NAME] = _read_text_input(options.ca_bundle, "--ca-bundle")
    if plan.rehearsal:
        for script in REHEARSAL_SCRIPTS:
            source = _REHEARSAL_SOURCE_DIR / script
            try:
                context_files[f"{REHEARSAL_DIR_NAME}/{script}"] = source.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"the rehearsal script {source} is missing: {exc.strerror}", fix="reinstall r4b-deploy"
                ) from exc

    dockerfile = render_template(
        "Dockerfile.j2",
        **_dockerfile_context(plan, options, vllm_version, options.ca_bundle is not None, wheels),
    )
    context_entries = sorted(context_files) + ([WHEELHOUSE_NAME] if wheels else [])
    dockerignore = render_template("dockerignore.j2", context_entries=context_entries)
    build_inputs = {DOCKERFILE_NAME: dockerfile, DOCKERIGNORE_NAME: dockerignore, **context_files}
    tag_payload = {
        "files": {name: sha256_hex(text) for name, text in sorted(build_inputs.items())},
        "wheels": wheels,
    }
    image_tag = f"{IMAGE_REPOSITORY}:{sha256_hex(json.dumps(tag_payload, sort_keys=True))[:IMAGE_TAG_HEX]}"

    model = options.model or plan.vllm.model
    served_model_name = options.served_model_name or plan.vllm.served_model_name
    command = _container_command(plan, options, model, served_model_name)

    volumes: list[VolumeMount] = []
    if validate.HF_MODEL_ID.fullmatch(model):
        volumes.append(VolumeMount(source=str(options.hf_cache_dir), target=CONTAINER_HF_HOME))
    if options.model is not None and options.model.startswith("/"):
        volumes.append(VolumeMount(source=options.model, target=options.model, read_only=True))
    project = project_name_for(out)
    container = ContainerSpec(
        name=project,
        image=image_tag,
        command=command,
        container_port=CONTAINER_PORT,
        bind_address=PUBLIC_BIND_ADDRESS if options.public else LOCAL_BIND_ADDRESS,
        host_port=options.host_port,
        shm_size_bytes=_shm_size_bytes(plan, options),
        ipc_mode="host" if options.ipc_host else None,
        ulimits=dict(options.ulimits),
        **_gpu_request(plan),
        volumes=volumes,
        labels={LABEL_PROJECT: project, LABEL_DIR: str(out), LABEL_PROFILE: plan.profile},
        health=_health(plan.rehearsal),
    )
    compose = render_template(
        "docker-compose.yml.j2",
        **_compose_literals(
            image_tag=container.image,
            project_name=container.name,
            command=container.command,
            port_binding=f"{container.bind_address}:{container.host_port}:{container.container_port}",
            ipc_host=container.ipc_mode == "host",
            shm_size_bytes=container.shm_size_bytes,
            ulimits=container.ulimits,
            volumes=[f"{v.source}:{v.target}{':ro' if v.read_only else ''}" for v in container.volumes],
            health=container.health,
            health_test=["CMD", "curl", "-fsS", container.health.url],
            labels=container.labels,
            gpu_count=container.gpu_count,
            gpu_device_ids=container.gpu_device_ids,
        ),
    )
    files = {
        **build_inputs,
        COMPOSE_NAME: compose,
        ARGS_NAME: "".join(f"{arg}\n" for arg in command),
    }
    files = dict(sorted(files.items()))
    deployment = Deployment(
        toolkit_version=__version__,
        dir=out,
        project_name=project,
        image_tag=image_tag,
        url=f"http://{LOCAL_BIND_ADDRESS}:{options.host_port}",
        env_file=out / ENV_FILE_NAME,
        rehearsal=plan.rehearsal,
        vllm_version=vllm_version,
        model=model,
        served_model_name=served_model_name,
        container=container,
        plan=plan,
        options=options,
        files={name: sha256_hex(text) for name, text in files.items()},
        wheels=wheels,
    )
    files[MANIFEST_NAME] = manifest_text(deployment)
    return files, deployment


def _compose_literals(**context: Any) -> dict[str, Any]:
    """Every string the compose file gets, with `$` written `$$`: compose interpolates `$X`,
    `${X:?msg}` in every value, and the folder's path (in a label `down` finds the container by)
    may hold a `$`. The one place a value is escaped for compose; others are whitelisted upstream."""
    return {key: _compose_literal(value) for key, value in context.items()}


def _compose_literal(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list | tuple):
        return [_compose_literal(item) for item in value]
    if isinstance(value, dict):
        return {_compose_literal(key): _compose_literal(item) for key, item in value.items()}
    return value


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
