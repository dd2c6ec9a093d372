"""The image: the Dockerfile's values, its build context and the content-addressed image tag.

vLLM's flags are given at run time (`render/compose.py`), never baked into the image: a change of
flags or profile keeps the image tag and rebuilds nothing. The tag hashes the Dockerfile and every
build-context input, so identical inputs give the same tag and a launcher can skip the build when
the image exists. The health check lives here too: the image declares it, compose and the
Kubernetes probes repeat its numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from r4b_deploy.deployment import (
    CA_BUNDLE_NAME,
    DOCKERFILE_NAME,
    DOCKERIGNORE_NAME,
    REHEARSAL_DIR_NAME,
    WHEELHOUSE_NAME,
    HealthSettings,
    sha256_hex,
)
from r4b_deploy.errors import ConfigError, UsageError
from r4b_deploy.launch.args import CONTAINER_PORT
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render import validate
from r4b_deploy.render.options import RenderOptions

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
# vLLM's router (replicas only), in a venv of its own: its dependencies never meet vLLM's.
ROUTER_VENV_DIR = "/opt/router"
ROUTER_ENTRYPOINT = (f"{ROUTER_VENV_DIR}/bin/vllm-router",)

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


class Image(BaseModel):
    """What `render_image` made: the build inputs' texts and the facts the manifest records."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    build_inputs: dict[str, str]  # path in the folder -> text: Dockerfile, .dockerignore, copied files
    image_tag: str
    vllm_version: str
    wheels: dict[str, int]  # the wheelhouse's wheels, name -> size (hashed into the tag, not copied here)


def render_image(plan: Plan, options: RenderOptions) -> Image:
    """The Dockerfile, its build context and the tag they hash to; nothing touches a folder."""
    from r4b_deploy.render.jinja import render_template

    vllm_version = resolve_vllm_version(plan)
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
    return Image(build_inputs=build_inputs, image_tag=image_tag, vllm_version=vllm_version, wheels=wheels)


def health_settings(rehearsal: bool) -> HealthSettings:
    """The image's health check (the Dockerfile's HEALTHCHECK and compose's `healthcheck:` alike)."""
    return HealthSettings(
        url=f"http://127.0.0.1:{CONTAINER_PORT}/health",
        interval_s=HEALTH_INTERVAL_S,
        timeout_s=HEALTH_TIMEOUT_S,
        start_period_s=REHEARSAL_HEALTH_START_PERIOD_S if rehearsal else GPU_HEALTH_START_PERIOD_S,
        retries=HEALTH_RETRIES,
    )


def resolve_vllm_version(plan: Plan) -> str:
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


def _read_text_input(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc}", fix=f"check {path}") from exc


def _dockerfile_context(
    plan: Plan, options: RenderOptions, vllm_version: str, ca_bundle: bool, wheels: Mapping[str, int]
) -> dict[str, Any]:
    from r4b_deploy.pins import gpu_pins, rehearsal_profile

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
        "health": health_settings(plan.rehearsal),
        "entrypoint": list(ENTRYPOINT),
        "vllm_version": vllm_version,
        "router_package": _router_package(plan),
        "router_venv_dir": ROUTER_VENV_DIR,
        "router_entrypoint": ROUTER_ENTRYPOINT[0],
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


def _router_package(plan: Plan) -> str | None:
    """The router's pin (profiles/vllm.yaml router.package) when the plan runs replicas: a
    one-engine image stays byte for byte what it was, and so does its tag."""
    if plan.replica_count == 1:
        return None
    from r4b_deploy.pins import router_pin

    package = router_pin().package
    _check_profile_value("router.package", package, validate.PINNED_REQUIREMENT)
    return package


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
