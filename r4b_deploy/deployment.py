"""The deployment folder: the contract between `render` (which writes it) and the runtimes, `up`,
`down`, `status` and `logs` (which read it). One module, so `launch/` never imports the renderer.

    DIR/
      Dockerfile          the image: OS packages, vLLM in /opt/venv, ENTRYPOINT vllm serve, no flags
      .dockerignore       the build context is only what the Dockerfile copies
      docker-compose.yml  service `vllm`: image tag + build ".", command = the flags, port, GPUs, health;
                          with replicas: services `replica-0`..`replica-N-1` (own GPUs or CPU core,
                          loopback ports) and `router` (vLLM's router from the same image, the API port)
      vllm-args.txt       the arguments after `vllm serve` as the container runs them, one per line
      r4b.env             secrets, mode 0600: VLLM_API_KEY (kept across re-renders), HF_TOKEN
      r4b-deploy.json     manifest: the Deployment below (plan, options, file hashes, image tag); no
                          secret, no timestamp, so the same inputs give the same bytes
      ca-bundle.pem       with --ca-bundle: extra CA certificates, trusted from the first build step
      wheelhouse/         with --wheelhouse: hard links (or copies) of the wheels; pip installs offline
      rehearsal/          rehearsal only: fix_vllm_cpu.py and tiny_model.py, copied from the package

Runtimes add their own files (state, pidfile, logs); .dockerignore keeps them out of a build.

A folder's identity is its resolved real path (`folder_identity`): the manifest, the container
name and the labels are all derived from it, so a folder reached through a symbolic link is the
same deployment whichever path names it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from r4b_deploy.datafile import validation_problem
from r4b_deploy.errors import ConfigError, R4BError, UsageError
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render import env as envfile
from r4b_deploy.render.options import RenderOptions, reading_manifest

SCHEMA_VERSION = 2  # 2: `replicas` and `router` replace `container`
MANIFEST_NAME = "r4b-deploy.json"
ENV_FILE_NAME = envfile.ENV_FILE_NAME
DOCKERFILE_NAME = "Dockerfile"
DOCKERIGNORE_NAME = ".dockerignore"
COMPOSE_NAME = "docker-compose.yml"
ARGS_NAME = "vllm-args.txt"
CA_BUNDLE_NAME = "ca-bundle.pem"
WHEELHOUSE_NAME = "wheelhouse"
REHEARSAL_DIR_NAME = "rehearsal"

PROJECT_PREFIX = "r4b-"
PROJECT_HEX = 8
# Labels that tie containers to their folder (compose sets them; the docker runtime too).
LABEL_PROJECT = "io.r4b-deploy.project"
LABEL_DIR = "io.r4b-deploy.dir"
LABEL_PROFILE = "io.r4b-deploy.profile"
LABEL_ROLE = "io.r4b-deploy.role"  # replica | router
LABEL_REPLICA = "io.r4b-deploy.replica"  # the replica's index, from 0

Role = Literal["replica", "router"]
REPLICA_SERVICE = "replica-{index}"  # compose service and container-name suffix of replica i
ROUTER_SERVICE = "router"
ONE_ENGINE_SERVICE = "vllm"  # the compose service of a one-engine deployment (no router)

RESTART_POLICY = "unless-stopped"
# Where the host publishes the API: loopback unless --public (the API key applies either way).
LOCAL_BIND_ADDRESS = "127.0.0.1"
PUBLIC_BIND_ADDRESS = "0.0.0.0"


class HealthSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str  # probed from inside the container; /health needs no API key
    interval_s: int
    timeout_s: int
    start_period_s: int
    retries: int


class VolumeMount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str  # host path
    target: str  # container path
    read_only: bool = False


class ContainerSpec(BaseModel):
    """How the container runs, resolved once: compose renders it and the docker runtime uses it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image: str
    command: list[str]  # the arguments after the image's ENTRYPOINT (`vllm serve`)
    container_port: int
    bind_address: str
    host_port: int
    shm_size_bytes: int | None  # None when ipc_mode is "host"
    ipc_mode: Literal["host"] | None
    ulimits: dict[str, int]
    # The GPU request: the plan's device indices when it names them, else a count; neither for the rehearsal.
    gpu_device_ids: list[str] = []
    gpu_count: int | None = None
    volumes: list[VolumeMount]
    labels: dict[str, str]
    init: bool = True
    restart_policy: str = RESTART_POLICY
    health: HealthSettings
    role: Role = "replica"
    replica_index: int | None = None  # None: the router, or the one engine of a deployment without one
    service: str = ONE_ENGINE_SERVICE  # its compose service name
    entrypoint: list[str] | None = None  # None: the image's (`vllm serve`); the router's own binary
    environment: dict[str, str] = {}  # values that are no secret (the rehearsal's CPU binding)
    cpuset_cpus: str | None = None  # the CPU cores it may run on (a rehearsal replica: its own)
    network: str | None = None  # the deployment's own network (replicas + router); None: Docker's default
    depends_on: list[str] = []  # services that must be healthy before this one starts (compose)

    @property
    def local_url(self) -> str:
        """Where this host reaches it: its published port on loopback."""
        return f"http://{LOCAL_BIND_ADDRESS}:{self.host_port}"


class Deployment(BaseModel):
    """A rendered folder, as `r4b-deploy.json` records it. Holds no secret: see `env_file`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    toolkit_version: str
    dir: Path  # folder_identity() of the folder: links resolved
    project_name: str  # compose -p and the container name; stable per folder identity
    image_tag: str  # content-addressed: same Dockerfile and build inputs, same tag
    url: str
    env_file: Path
    rehearsal: bool
    vllm_version: str  # what the image installs
    model: str  # what the container serves (the rehearsal's tiny model is built into the image)
    served_model_name: str
    # The vLLM engines: one (publishing the API itself), or several behind `router`, which then
    # publishes the API port; replicas publish loopback ports of their own (metrics, direct checks).
    replicas: list[ContainerSpec]
    router: ContainerSpec | None = None
    plan: Plan  # as the planner made it; overrides from `options` are applied in the fields above
    options: RenderOptions
    files: dict[str, str]  # relative path -> sha256 of every rendered file but the manifest and env file
    wheels: dict[str, int] = {}  # wheelhouse/ file name -> size in bytes (hashed by name and size)

    @property
    def compose_file(self) -> Path:
        return self.dir / COMPOSE_NAME

    @property
    def manifest_file(self) -> Path:
        return self.dir / MANIFEST_NAME

    @property
    def container(self) -> ContainerSpec:
        """The first vLLM engine: the only one when there is no router."""
        return self.replicas[0]

    @property
    def containers(self) -> list[ContainerSpec]:
        """Everything a runtime starts: the replicas, then the router."""
        return [*self.replicas, *([self.router] if self.router is not None else [])]

    @property
    def vllm_command(self) -> list[str]:
        """The first engine's full command line: `vllm serve` and its arguments."""
        return ["vllm", "serve", *self.container.command]


# ----------------------------------------------------------------------------- identity


def folder_identity(path: Path | str) -> Path:
    """THE path of a deployment folder: absolute, `~` expanded, symbolic links resolved.

    Render records it, the container name and labels hash it, and every command and runtime
    looks a folder up by it; a folder named through a link is then the same deployment.
    The folder need not exist yet (render creates it); its existing parents are resolved.
    """
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def project_name_for(folder: Path | str) -> str:
    """`r4b-<8 hex>` of the folder's identity: one compose project and container per folder."""
    return PROJECT_PREFIX + sha256_hex(str(folder_identity(folder)))[:PROJECT_HEX]


# ----------------------------------------------------------------------------- reading a folder


def manifest_text(deployment: Deployment) -> str:
    return json.dumps(deployment.model_dump(mode="json"), indent=2) + "\n"


def read_manifest(folder: Path) -> Deployment:
    """The manifest of `folder` as it is, wherever it was rendered (see `load_deployment`)."""
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(
            f"{folder} is not an r4b-deploy folder (no {MANIFEST_NAME})",
            fix=f"render one first: r4b-deploy render --out {folder}",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", fix=f"check the permissions of {path}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON: {exc}", fix=f"re-render: r4b-deploy render --out {folder} --force"
        ) from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: schema_version {version!r} is not {SCHEMA_VERSION} (written by another r4b-deploy version)",
            fix=f"re-render with this version: r4b-deploy render --out {folder} --force",
        )
    try:
        with reading_manifest():
            return Deployment.model_validate(raw)
    except (ValidationError, R4BError) as exc:
        if isinstance(exc, ValidationError):
            problem = validation_problem(exc)
            message = f"field {problem.field!r}: {problem.message}"
        else:
            message = exc.message
        raise ConfigError(f"{path}: {message}", fix=f"re-render: r4b-deploy render --out {folder} --force") from exc


def load_deployment(folder: Path | str) -> Deployment:
    """The Deployment a folder's manifest records. A folder moved since rendering is refused:
    its compose labels and container name still name the old place."""
    here = folder_identity(folder)
    deployment = read_manifest(here)
    if deployment.dir != here:
        raise UsageError(
            f"{here} was rendered for {deployment.dir} (moved or copied since)",
            fix=f"re-render it here: r4b-deploy render --out {here} --force",
        )
    return deployment


def modified_files(deployment: Deployment) -> list[str]:
    """Rendered files that are missing or differ from the manifest's hashes (hand edits)."""
    changed = []
    for name, digest in deployment.files.items():
        try:
            if sha256_hex((deployment.dir / name).read_bytes()) != digest:
                changed.append(name)
        except OSError:
            changed.append(name)
    return changed


def read_env_file(folder: Path | str) -> dict[str, str]:
    """The deployment's secrets (VLLM_API_KEY, HF_TOKEN) for a runtime to pass to vLLM."""
    return envfile.read_env_file(folder_identity(folder))
