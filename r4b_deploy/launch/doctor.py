"""`r4b-deploy doctor`: check the host before `up`, one line per fact, each with its fix.

pass / warn / fail / skip (does not apply here, e.g. GPU checks for the CPU rehearsal). A fail
means `up` would fail; a warn means it may work but is not what the pins recommend. Thresholds
come from profiles/vllm.yaml (driver, CUDA), the model's spec (weight size: R-4B's
profiles/model.yaml, or `--model`'s, as `plan` resolves it) and the renderer (shared memory,
port); the image-size estimates are named below.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from r4b_deploy.errors import EnvironmentProblem, R4BError
from r4b_deploy.launch.base import RuntimeName
from r4b_deploy.pins import version_tuple  # the one reading of a version (drivers too)

if TYPE_CHECKING:
    import docker

    from r4b_deploy.spec import ModelSpec

CheckStatus = Literal["pass", "warn", "fail", "skip"]

BYTES_PER_GB = 1000**3
# What an image build needs on the Docker data-root. The classic builder keeps the build stage's
# layers (the venv) as cache beside the final image's copy, so the venv counts twice.
# GPU: CUDA devel base ≈ 7 GB + vLLM/torch venv ≈ 9 GB twice. Rehearsal (measured): base 0.2 GB,
# venv 2.45 GB twice, wheelhouse 0.9 GB in the build context and stage.
GPU_IMAGE_BYTES_ESTIMATE = 25 * BYTES_PER_GB
REHEARSAL_IMAGE_BYTES_ESTIMATE = 7 * BYTES_PER_GB
# Free space below need x this factor is a warning: logs, a second image version, the HF cache's temp files.
DISK_HEADROOM_FACTOR = 1.5
WEIGHTS_DTYPE = "bfloat16"
DEV_SHM = Path("/dev/shm")
GPU_PROBE_LABEL = "io.r4b-deploy.doctor"
GPU_PROBE_COMMAND = ["true"]
GPU_PROBE_TIMEOUT_S = 60


class DoctorCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: CheckStatus
    message: str
    fix: str | None = None


class DoctorReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    runtime: RuntimeName
    rehearsal: bool
    checks: list[DoctorCheck]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        return sum(c.status == "fail" for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warned(self) -> int:
        return sum(c.status == "warn" for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.failed == 0


# ---------------------------------------------------------------- small pure helpers


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / BYTES_PER_GB:.1f} GB"


def _existing_parent(path: Path) -> Path:
    """The nearest folder that exists: where a folder not yet made would be made."""
    path = Path(os.path.abspath(os.path.expanduser(str(path))))
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path("/")


def disk_check(name: str, where: Path, need_bytes: int, what: str) -> DoctorCheck:
    """pass / warn / fail on the free space where `what` will be written."""
    target = _existing_parent(where)
    try:
        free = shutil.disk_usage(target).free
    except OSError as exc:
        return DoctorCheck(name=name, status="warn", message=f"cannot read the free space of {target}: {exc.strerror}")
    message = f"{_gb(free)} free at {target}; about {_gb(need_bytes)} needed for {what}"
    fix = f"free space at {target} (for Docker: `docker system prune`), or move it to a larger disk"
    if free < need_bytes:
        return DoctorCheck(name=name, status="fail", message=message, fix=fix)
    if free < need_bytes * DISK_HEADROOM_FACTOR:
        return DoctorCheck(name=name, status="warn", message=message + " (little headroom)", fix=fix)
    return DoctorCheck(name=name, status="pass", message=message)


# ---------------------------------------------------------------- the checks


def check_driver(rehearsal: bool, vllm_version: str | None = None) -> tuple[DoctorCheck, DoctorCheck]:
    """Driver and CUDA version against the needs of the vLLM release this host gets: the newest in
    profiles/vllm.yaml gpu.releases the driver runs (as `plan` chooses), or `vllm_version`."""
    from r4b_deploy.pins import choose_gpu_pins, gpu_pins

    if rehearsal:
        reason = "the CPU rehearsal needs no GPU"
        return (
            DoctorCheck(name="driver", status="skip", message=reason),
            DoctorCheck(name="cuda", status="skip", message=reason),
        )
    newest = gpu_pins()
    install_fix = (
        f"install NVIDIA driver {newest.recommended_driver_version} or newer (nvidia-smi must work), "
        "or rehearse without a GPU: r4b-deploy up --rehearsal"
    )
    try:
        from r4b_deploy.hardware.probe import probe_inventory

        inventory = probe_inventory()
    except EnvironmentProblem as exc:
        return (
            DoctorCheck(name="driver", status="fail", message=exc.message, fix=install_fix),
            DoctorCheck(name="cuda", status="skip", message="no driver to ask"),
        )
    names = ", ".join(sorted({g.name for g in inventory.gpus})) or "no GPU"
    driver = inventory.driver_version
    summary = f"{len(inventory.gpus)} GPU(s): {names}"
    choice = choose_gpu_pins(driver, vllm_version)
    pins = choice.pins
    newest_note = (
        ""
        if pins.vllm_version == newest.vllm_version
        else f"; {newest.recommended_driver_version} or newer runs the newest, vLLM {newest.vllm_version}"
    )
    if driver is None:
        driver_check = DoctorCheck(
            name="driver", status="warn", message=f"NVML did not report the driver version ({summary})", fix=install_fix
        )
    elif version_tuple(driver) < version_tuple(pins.min_driver_version):
        driver_check = DoctorCheck(
            name="driver",
            status="fail",
            message=f"driver {driver} is older than {pins.min_driver_version}, the oldest that runs "
            f"vLLM {pins.vllm_version}'s CUDA {pins.cuda_runtime} wheels; the newest, {newest.vllm_version}, "
            f"needs {newest.min_driver_version} ({summary})",
            fix=install_fix,
        )
    elif version_tuple(driver) < version_tuple(pins.recommended_driver_version):
        driver_check = DoctorCheck(
            name="driver",
            status="warn",
            message=f"driver {driver} runs CUDA {pins.cuda_runtime} only through minor-version compatibility "
            f"(recommended: {pins.recommended_driver_version} or newer) ({summary}). {choice.reason}",
            fix=f"upgrade to NVIDIA driver {pins.recommended_driver_version} or newer when you can{newest_note}",
        )
    else:
        driver_check = DoctorCheck(
            name="driver", status="pass", message=f"driver {driver} ({summary}). {choice.reason}"
        )

    cuda = inventory.cuda_driver_version
    if cuda is None:
        cuda_check = DoctorCheck(name="cuda", status="warn", message="NVML did not report the driver's CUDA version")
    elif version_tuple(cuda) >= version_tuple(pins.cuda_runtime):
        cuda_check = DoctorCheck(
            name="cuda",
            status="pass",
            message=f"the driver supports CUDA {cuda}; vLLM's wheels need {pins.cuda_runtime}",
        )
    elif version_tuple(cuda)[:1] == version_tuple(pins.cuda_runtime)[:1]:
        cuda_check = DoctorCheck(
            name="cuda",
            status="warn",
            message=f"the driver supports CUDA {cuda}, older than the wheels' {pins.cuda_runtime}: "
            "minor-version compatibility only (some kernels may fail to load)",
            fix=f"upgrade to NVIDIA driver {pins.recommended_driver_version} or newer",
        )
    else:
        cuda_check = DoctorCheck(
            name="cuda",
            status="fail",
            message=f"the driver supports CUDA {cuda}; vLLM {pins.vllm_version}'s wheels need {pins.cuda_runtime}",
            fix=install_fix,
        )
    return driver_check, cuda_check


def _docker_client() -> tuple[docker.DockerClient | None, DoctorCheck]:
    from r4b_deploy.launch.docker_client import connect

    try:
        client = connect()
    except EnvironmentProblem as exc:
        return None, DoctorCheck(name="docker", status="fail", message=exc.message, fix=exc.fix)
    try:
        version = client.version().get("Version", "?")
    except Exception:  # the ping worked; the version is only decoration
        version = "?"
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    return client, DoctorCheck(name="docker", status="pass", message=f"Docker engine {version} answers at {where}")


def _probe_image(client: docker.DockerClient) -> str | None:
    """A local image to run the GPU probe in: the base image if present, else any tagged image."""
    import docker as docker_sdk

    from r4b_deploy.pins import gpu_pins

    with contextlib.suppress(docker_sdk.errors.DockerException):
        client.images.get(gpu_pins().base_image)
        return gpu_pins().base_image
    with contextlib.suppress(docker_sdk.errors.DockerException):
        for image in client.images.list():
            if image.tags:
                return image.tags[0]
    return None


def check_nvidia_runtime(client: docker.DockerClient, probe: bool = True) -> DoctorCheck:
    """Can Docker give a container a GPU? The runtimes `docker info` lists, then a real GPU request."""
    import docker as docker_sdk

    from r4b_deploy.launch.docker_client import api_explanation
    from r4b_deploy.launch.docker_spec import GPU_DRIVER_MARKERS, NVIDIA_TOOLKIT_FIX

    try:
        runtimes = sorted((client.info().get("Runtimes") or {}).keys())
    except docker_sdk.errors.DockerException:
        runtimes = []
    listed = f"runtimes: {', '.join(runtimes) or 'none listed'}"
    image = _probe_image(client) if probe else None
    if image is None:
        if "nvidia" in runtimes:
            return DoctorCheck(
                name="nvidia-runtime",
                status="warn",
                message=f"nvidia is registered ({listed}); no local image to probe",
            )
        return DoctorCheck(
            name="nvidia-runtime",
            status="fail",
            message=f"no nvidia runtime registered ({listed})",
            fix=NVIDIA_TOOLKIT_FIX,
        )
    container = None
    try:
        container = client.containers.create(
            image,
            entrypoint=GPU_PROBE_COMMAND,
            command=[],
            labels={GPU_PROBE_LABEL: "gpu-probe"},
            device_requests=[docker_sdk.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
        )
        container.start()
        container.wait(timeout=GPU_PROBE_TIMEOUT_S)
    except docker_sdk.errors.APIError as exc:
        explanation = api_explanation(exc)
        if any(m in explanation.lower() for m in GPU_DRIVER_MARKERS):
            return DoctorCheck(
                name="nvidia-runtime",
                status="fail",
                message=f"a GPU request is refused: {explanation.strip()} ({listed})",
                fix=NVIDIA_TOOLKIT_FIX,
            )
        return DoctorCheck(
            name="nvidia-runtime",
            status="fail",
            message=f"a container with a GPU request failed to start: {explanation.strip()}",
            fix="check `nvidia-smi` on the host, then `docker run --rm --gpus all IMAGE nvidia-smi`",
        )
    except Exception as exc:  # a timeout waiting for `true`: report, do not crash the doctor
        return DoctorCheck(name="nvidia-runtime", status="warn", message=f"the GPU probe did not finish: {exc}")
    finally:
        if container is not None:
            with contextlib.suppress(docker_sdk.errors.DockerException):
                container.remove(force=True)
    return DoctorCheck(name="nvidia-runtime", status="pass", message=f"a container got GPUs ({listed})")


def check_image_disk(client: docker.DockerClient, rehearsal: bool) -> DoctorCheck:
    need = REHEARSAL_IMAGE_BYTES_ESTIMATE if rehearsal else GPU_IMAGE_BYTES_ESTIMATE
    try:
        root = client.info().get("DockerRootDir")
    except Exception:
        root = None
    if not root or not Path(root).exists():
        return DoctorCheck(
            name="disk-image",
            status="skip",
            message=f"the Docker data-root ({root or 'unknown'}) is not on this machine; "
            f"the image needs about {_gb(need)}",
        )
    return disk_check("disk-image", Path(root), need, "the image build")


def check_weights_disk(hf_cache_dir: Path, rehearsal: bool, spec: ModelSpec | None = None) -> DoctorCheck:
    """Room in the HF cache for the weights `up` downloads: the planned model's (None: R-4B)."""
    from r4b_deploy.spec import model_spec

    if rehearsal:
        return DoctorCheck(
            name="disk-weights", status="skip", message="the rehearsal's tiny model is built into the image"
        )
    spec = spec or model_spec()
    if _is_local_folder(spec):
        return DoctorCheck(
            name="disk-weights", status="skip", message=f"the weights are in {spec.model_id}: nothing to download"
        )
    need = spec.parameters * spec.weight_bytes_per_param[WEIGHTS_DTYPE]
    return disk_check("disk-weights", hf_cache_dir, need, f"{spec.model_id}'s {WEIGHTS_DTYPE} weights")


def check_shm(runtime: RuntimeName, ipc_host: bool) -> DoctorCheck:
    """Host /dev/shm matters to the process runtime and --ipc-host; a container otherwise gets its own."""
    from r4b_deploy.render.options import MIN_SHM_SIZE_BYTES

    try:
        usage = shutil.disk_usage(DEV_SHM)
    except OSError:
        return DoctorCheck(name="shm", status="warn", message=f"{DEV_SHM} is missing", fix="mount a tmpfs on /dev/shm")
    host_uses_it = runtime == "process" or ipc_host
    size = f"{DEV_SHM}: {usage.total // 1024**2} MiB, {usage.free // 1024**2} MiB free"
    if usage.free >= MIN_SHM_SIZE_BYTES:
        return DoctorCheck(name="shm", status="pass", message=size)
    if not host_uses_it:
        return DoctorCheck(
            name="shm", status="pass", message=f"{size}; the container gets its own (--shm-size), not this one"
        )
    return DoctorCheck(
        name="shm",
        status="fail",
        message=f"{size}: vLLM needs at least {MIN_SHM_SIZE_BYTES // 1024**2} MiB (its engine dies otherwise)",
        fix=f"remount larger: sudo mount -o remount,size=1G {DEV_SHM}"
        + ("" if runtime == "process" else "; or drop --ipc-host so the container gets its own"),
    )


def check_port(port: int, public: bool) -> DoctorCheck:
    from r4b_deploy.deployment import LOCAL_BIND_ADDRESS, PUBLIC_BIND_ADDRESS
    from r4b_deploy.launch.ports import port_problem

    host = PUBLIC_BIND_ADDRESS if public else LOCAL_BIND_ADDRESS
    problem = port_problem(host, port)
    if problem is not None:
        return DoctorCheck(
            name="port",
            status="fail",
            message=problem.message + " (if that is this deployment already running, all is well)",
            fix=problem.fix,
        )
    return DoctorCheck(name="port", status="pass", message=f"port {port} on {host} is free")


def _is_local_folder(spec: ModelSpec) -> bool:
    """A model served from a folder (`--model DIR`): its model_id is the folder's absolute path."""
    return Path(spec.model_id).is_absolute()


def check_hf_token(
    hf_token_env: str, environ: Mapping[str, str], rehearsal: bool, gated: bool, spec: ModelSpec | None = None
) -> DoctorCheck:
    from r4b_deploy.spec import model_spec

    if rehearsal:
        return DoctorCheck(name="hf-token", status="skip", message="the rehearsal downloads nothing from the Hub")
    spec = spec or model_spec()
    if _is_local_folder(spec):
        message = f"{spec.model_id} is a folder: nothing is downloaded"
        return DoctorCheck(name="hf-token", status="skip", message=message)
    model_id = spec.model_id
    if environ.get(hf_token_env):
        return DoctorCheck(name="hf-token", status="pass", message=f"${hf_token_env} is set (copied into r4b.env only)")
    if gated:
        return DoctorCheck(
            name="hf-token",
            status="fail",
            message=f"${hf_token_env} is not set and the model is gated",
            fix=f"accept the model's terms on huggingface.co, then export {hf_token_env}=hf_... before `up`",
        )
    return DoctorCheck(
        name="hf-token",
        status="warn",
        message=f"${hf_token_env} is not set; {model_id} is public, so downloads work without it",
        fix=f"export {hf_token_env}=hf_... for higher Hub rate limits (optional)",
    )


def run_doctor(
    *,
    runtime: RuntimeName = "docker",
    rehearsal: bool = False,
    port: int | None = None,
    public: bool = False,
    ipc_host: bool = False,
    hf_cache_dir: Path | None = None,
    hf_token_env: str | None = None,
    gated: bool = False,
    probe_gpu_request: bool = True,
    environ: Mapping[str, str] | None = None,
    model: str | None = None,
) -> DoctorReport:
    """Every check, in the order a user would fix them. Never raises for what it finds: that is the
    report. `model` is `--model` as `plan` takes it (None: R-4B); it sizes the weights' disk check."""
    from r4b_deploy.render.options import DEFAULT_HOST_PORT, RenderOptions
    from r4b_deploy.spec import resolve_model

    environ = os.environ if environ is None else environ
    # The values `render` will get, validated as render validates them (a UsageError, before any check).
    given = {"hf_cache_dir": hf_cache_dir, "hf_token_env": hf_token_env}
    options = RenderOptions(**{key: value for key, value in given.items() if value is not None})
    hf_cache = options.hf_cache_dir
    spec = resolve_model(model)  # a UsageError for an unknown name, before any check
    checks: list[DoctorCheck] = []
    checks += check_driver(rehearsal)
    if runtime == "docker":
        client, docker_check = _docker_client()
        checks.append(docker_check)
        if client is None:
            checks.append(DoctorCheck(name="nvidia-runtime", status="skip", message="no Docker engine to ask"))
            checks.append(DoctorCheck(name="disk-image", status="skip", message="no Docker engine to ask"))
        else:
            try:
                if rehearsal:
                    checks.append(
                        DoctorCheck(name="nvidia-runtime", status="skip", message="the rehearsal requests no GPU")
                    )
                else:
                    checks.append(check_nvidia_runtime(client, probe=probe_gpu_request))
                checks.append(check_image_disk(client, rehearsal))
            except R4BError as exc:
                checks.append(DoctorCheck(name="docker", status="fail", message=exc.message, fix=exc.fix))
            finally:
                client.close()
    checks.append(check_weights_disk(hf_cache, rehearsal, spec))
    checks.append(check_shm(runtime, ipc_host))
    checks.append(check_port(port if port is not None else DEFAULT_HOST_PORT, public))
    checks.append(check_hf_token(options.hf_token_env, environ, rehearsal, gated, spec))
    return DoctorReport(runtime=runtime, rehearsal=rehearsal, checks=checks)
