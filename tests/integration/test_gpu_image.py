"""The GPU image for real, on the stand-in base, with no GPU: built from the rendered Dockerfile (vLLM's
CUDA wheels from PyPI, as a user's build gets them), then asked, through vLLM itself
(r4b_deploy/launch/vllm_check.py run by the image's python), whether its vLLM is the pin, accepts
the exact `vllm serve` arguments rendered for every tier (light, medium, heavy, tp8, a reduced T4
plan, fp8 KV, a pinned model revision), knows R-4B's architecture and the reasoning parser the
plans name. Every other release of profiles/vllm.yaml gpu.releases gets the same check in a venv.

vLLM picks its platform from NVML (is there a GPU?) and its CUDA platform imports libcuda.so.1 (which
nvidia-container-toolkit mounts on a GPU host). With two stand-ins (tests/nvml's libnvidia-ml
reporting an H100, and a libcuda.so.1 whose every call fails) it builds the parser exactly as on a
GPU host; parsing makes no CUDA call.

The cold image build takes about 10 minutes and 20 GB of the engine's data-root (the image and its
build stage, the pip step's cache), an older release's venv about 4 minutes and 11 GB:
`.ci/run` makes both before the tests, so here they are normally found by tag and stamp.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fixtures.nvml import NVML_SONAME, NVML_STANDIN_CONFIG_ENV, standin_gpu
from support import require

import r4b_deploy.launch
from r4b_deploy.launch.vllm_check import RESULT_PREFIX, ensure_venv
from r4b_deploy.paths import cache_dir
from r4b_deploy.pins import gpu_pins, gpu_versions, rehearsal_profile
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

CHECK_SCRIPT = Path(r4b_deploy.launch.__file__).parent / "vllm_check.py"
IMAGE_PYTHON = "/opt/venv/bin/python"  # Dockerfile.j2's venv
IMAGE_VLLM = "/opt/venv/bin/vllm"
HOST_MOUNT = "/r4b-check"  # the check script, its request and the stand-ins, read-only
BUILD_TIMEOUT_S = 3600  # a cold build on a busy 2-core machine
CHECK_TIMEOUT_S = 600  # importing vLLM and torch's CUDA build on 2 cores, model inspection in a subprocess
ARCHITECTURE = "RForConditionalGeneration"
REVISION = "0123456789abcdef0123456789abcdef01234567"  # any commit id: nothing is downloaded
# name -> planning request: every tier, a plan reduced to fit, fp8 KV, a pinned revision.
CASES: dict[str, dict] = {
    "light": {"gpu": "L4"},
    "medium": {"gpu": "A100-40GB"},
    "heavy": {"gpu": "H100-80GB"},
    "tp8": {"gpu": "A100-40GB:8", "profile": "tp8"},
    "reduced": {"gpu": "T4"},
    "fp8-kv": {"gpu": "L4", "kv_cache_dtype": "fp8"},
    "revision": {"gpu": "H100-80GB", "revision": REVISION},
}
# A list vLLM must refuse: proves the parser really judges the lists (a check that cannot fail proves nothing).
CONTROL = "control-unknown-flag"
# The CUDA driver API entry points vLLM's and torch's extension modules link (nm -D --undefined-only
# on 0.33.0's and 0.19.1's; 0.19.1 needs a subset). A release needing another fails to import with
# "undefined symbol: cuXxx": add it here.
LIBCUDA_SYMBOLS = [
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuDeviceGet",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxGetState",
    "cuDevicePrimaryCtxRetain",
    "cuDriverGetVersion",
    "cuFuncGetAttribute",
    "cuFuncSetAttribute",
    "cuFuncSetCacheConfig",
    "cuGetErrorString",
    "cuGetProcAddress_v2",
    "cuLaunchCooperativeKernel",
    "cuLaunchKernel",
    "cuLinkAddData_v2",
    "cuLinkComplete",
    "cuLinkCreate_v2",
    "cuMemAddressFree",
    "cuMemAddressReserve",
    "cuMemCreate",
    "cuMemGetAllocationGranularity",
    "cuMemMap",
    "cuMemRelease",
    "cuMemSetAccess",
    "cuMemUnmap",
    "cuModuleGetFunction",
    "cuModuleLoad",
    "cuModuleLoadData",
    "cuModuleLoadDataEx",
    "cuModuleUnload",
    "cuOccupancyMaxActiveBlocksPerMultiprocessor",
    "cuPointerGetAttribute",
    "cuTensorMapEncodeTiled",
]
CUDA_ERROR_NO_DEVICE = 100
STANDIN_INVENTORY = {
    "driver_version": "580.65.06",
    "cuda_driver_version": 13000,
    "devices": [standin_gpu("NVIDIA H100 80GB HBM3", 81559, (9, 0), uuid="GPU-5c1f0b7e-0000-4000-8000-00000000e001")],
}


def _render_cases(root: Path, vllm_version: str | None = None) -> dict:
    """Each case rendered as `r4b-deploy render` writes it (for `vllm_version`, or the plan's choice)."""
    return {
        name: write_deployment(
            make_plan(PlanRequest(**request, vllm_version=vllm_version)), RenderOptions(), root / name, environ={}
        )
        for name, request in CASES.items()
    }


@pytest.fixture(scope="module")
def gpu_deployments(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _render_cases(tmp_path_factory.mktemp("gpu-deployments"))


@pytest.fixture(scope="module")
def gpu_host(nvml_standin_lib: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the GPU host's two libraries as stand-ins and the NVML inventory they report."""
    gcc = shutil.which("gcc")
    require(gcc is not None, "gcc is needed to compile the libcuda.so.1 stand-in")
    out = tmp_path_factory.mktemp("gpu-host")
    shutil.copy(nvml_standin_lib / NVML_SONAME, out / NVML_SONAME)
    source = out / "libcuda_standin.c"
    source.write_text(
        "/* libcuda.so.1 stand-in: every driver call answers CUDA_ERROR_NO_DEVICE. */\n"
        + "".join(f"int {name}(void) {{ return {CUDA_ERROR_NO_DEVICE}; }}\n" for name in LIBCUDA_SYMBOLS)
    )
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-o", str(out / "libcuda.so.1"), str(source), "-Wl,-soname,libcuda.so.1"],
        check=True,
        capture_output=True,
    )
    (out / "inventory.json").write_text(json.dumps(STANDIN_INVENTORY))
    shutil.copy(CHECK_SCRIPT, out / "vllm_check.py")
    return out


def _request(deployments: dict, vllm_version: str) -> dict:
    heavy = deployments["heavy"]
    lists = {name: d.container.command for name, d in deployments.items()}
    lists[CONTROL] = [*heavy.container.command, "--no-such-flag", "1"]
    parsers = sorted({d.plan.vllm.reasoning_parser for d in deployments.values() if d.plan.vllm.reasoning_parser})
    assert parsers, "the plans name a reasoning parser"
    return {
        "expect_version": vllm_version,
        "argument_lists": lists,
        "architectures": [ARCHITECTURE],
        "reasoning_parsers": parsers,
    }


def _report(code: int, out: str, err: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    assert lines, f"exit {code}, no result line; stderr: {err[-3000:]}"
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def _assert_report(report: dict, deployments: dict, vllm_version: str, platform: str, offline: bool) -> None:
    """The release is the one asked for, every list passes its parser as the plan meant it, the
    control list fails, R-4B's class loads and every reasoning parser named is registered.
    `offline` (HF_HUB_OFFLINE): a release that looks the model up while making its engine arguments
    stops after `validate`; without it (the image, no network) vLLM must get to its engine arguments."""
    summary = {
        name: (r["ok"], r["stage"], r["error"] or r.get("skipped")) for name, r in report["argument_lists"].items()
    }
    print(f"\nvLLM {report['vllm_version']} on {report['platform']}: {json.dumps(summary)[:3000]}")
    assert report["vllm_version"].split("+")[0] == vllm_version and report["version_ok"]
    assert report["platform"] == platform
    lists = dict(report["argument_lists"])
    control = lists.pop(CONTROL)
    assert not control["ok"] and control["stage"] == "parse" and "--no-such-flag" in control["error"]
    for name, result in lists.items():
        assert result["ok"], f"{name}: {result['error']}"
        # "done": vLLM built its engine arguments; "validate": this release looks the model up there.
        assert result["stage"] == "done" or (offline and result["stage"] == "validate" and result["skipped"]), name
        deployment = deployments[name]
        settings, values = deployment.plan.vllm, result["values"]
        # vLLM read each flag as the plan meant it, not just accepted it.
        assert values["model_tag"] == deployment.model, name
        assert values["served_model_name"] == [deployment.served_model_name], name
        assert values["max_model_len"] == settings.max_model_len, name
        assert values["max_num_seqs"] == settings.max_num_seqs, name
        assert values["max_num_batched_tokens"] == settings.max_num_batched_tokens, name
        assert values["gpu_memory_utilization"] == settings.gpu_memory_utilization, name
        assert values["dtype"] == settings.dtype, name
        assert values.get("tensor_parallel_size", 1) == settings.tensor_parallel_size, name
        assert values.get("kv_cache_dtype", "auto") == settings.kv_cache_dtype, name
        assert values.get("enforce_eager", False) == settings.enforce_eager, name
        assert values.get("revision") == settings.revision, name
        assert values["reasoning_parser"] == settings.reasoning_parser, name
        assert values["limit_mm_per_prompt"]["image"] == settings.images_per_prompt, name
    assert lists["revision"]["values"]["revision"] == REVISION
    arch = report["architectures"][ARCHITECTURE]
    assert arch["registered"] and arch["inspected"] and arch["supports_multimodal"], arch
    assert all(r["ok"] for r in report["reasoning_parsers"].values()), report["reasoning_parsers"]
    assert not report["ok"]  # the control list failed, and the report says so


def test_cases_cover_every_tier(gpu_deployments: dict) -> None:
    plans = {name: d.plan for name, d in gpu_deployments.items()}
    for tier in ("light", "medium", "heavy", "tp8"):
        assert plans[tier].profile == tier and not plans[tier].reduced, tier
    assert plans["tp8"].vllm.tensor_parallel_size == 8
    assert plans["reduced"].reduced and plans["reduced"].vllm.dtype == "float16"
    assert plans["fp8-kv"].vllm.kv_cache_dtype == "fp8"
    assert "--revision" in gpu_deployments["revision"].container.command
    # A named GPU has no driver to measure: every case gets the newest pin, and one image serves them all.
    assert {d.vllm_version for d in gpu_deployments.values()} == {gpu_pins().vllm_version}
    assert len({d.image_tag for d in gpu_deployments.values()}) == 1


# ----------------------------------------------------------------------------- the image (default pin)


@pytest.fixture(scope="module")
def gpu_image(docker_client, docker_base_image: str, gpu_deployments: dict) -> str:
    """The rendered GPU image's tag, built here only when `.ci/run` did not build it already."""
    import docker

    deployment = gpu_deployments["heavy"]
    tag = deployment.image_tag
    try:
        docker_client.images.get(tag)
        print(f"\nGPU image {tag}: present (built earlier), not rebuilt")
    except docker.errors.ImageNotFound:
        started = time.monotonic()
        log: list[str] = []
        for item in docker_client.api.build(
            path=str(deployment.dir), tag=tag, decode=True, rm=True, forcerm=True, pull=False, timeout=BUILD_TIMEOUT_S
        ):
            log.append(str(item.get("stream", item.get("error", ""))))
            assert "error" not in item, "".join(log[-40:])
        print(f"\nGPU image {tag}: built cold in {time.monotonic() - started:.0f} s")
    print(f"GPU image {tag}: {docker_client.images.get(tag).attrs['Size'] / 1e9:.2f} GB")
    return tag


def _run_in_image(docker_client, labels: dict, image: str, host: Path, command: list[str]) -> tuple[int, str, str]:
    """One command in the image with no network, the GPU host's stand-ins on its library path."""
    container = docker_client.containers.create(
        image,
        entrypoint=command[:1],
        command=command[1:],
        network_disabled=True,
        labels=labels,
        volumes={str(host): {"bind": HOST_MOUNT, "mode": "ro"}},
        environment={
            "LD_LIBRARY_PATH": HOST_MOUNT,
            NVML_STANDIN_CONFIG_ENV: f"{HOST_MOUNT}/inventory.json",
            "VLLM_NO_USAGE_STATS": "1",
        },
    )
    try:
        container.start()
        code = container.wait(timeout=CHECK_TIMEOUT_S)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return code, out, err


def test_vllm_version_is_the_pin(docker_client, docker_labels: dict, gpu_image: str, gpu_host: Path) -> None:
    code, out, err = _run_in_image(docker_client, docker_labels, gpu_image, gpu_host, [IMAGE_VLLM, "--version"])
    assert code == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == gpu_pins().vllm_version


def test_rendered_arguments_pass_the_pinned_vllm_parser(
    docker_client, docker_labels: dict, gpu_image: str, gpu_host: Path, gpu_deployments: dict, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    shutil.copytree(gpu_host, host)
    (host / "request.json").write_text(json.dumps(_request(gpu_deployments, gpu_pins().vllm_version)))
    command = ["/bin/sh", "-c", f"{IMAGE_PYTHON} {HOST_MOUNT}/vllm_check.py < {HOST_MOUNT}/request.json"]
    code, out, err = _run_in_image(docker_client, docker_labels, gpu_image, host, command)
    _assert_report(_report(code, out, err), gpu_deployments, gpu_pins().vllm_version, "cuda", offline=False)
    assert code == 1  # the control list failed, so the exit status says so


# ----------------------------------------------------------------------------- every other pin, in a venv


def _release_python(version: str) -> tuple[Path, dict[str, str], str]:
    """(python, environment, platform) of a venv holding `version`. The rehearsal's CPU venv when the
    CPU build is that release (its parser is the same code); else a venv of the GPU wheels, cached
    under R4B_CACHE_DIR/vllm-check (made by `.ci/run`; made here when missing: ~4 min, ~11 GB)."""
    if version == rehearsal_profile().vllm_version:
        from r4b_deploy.rehearsal.vllm_cpu import runtime_env, venv_dir

        python = venv_dir() / "bin" / "python"
        require(python.exists(), f"the rehearsal's CPU venv ({python}): python -m r4b_deploy.rehearsal setup")
        return python, {**os.environ, **runtime_env()}, "cpu"
    python = ensure_venv(cache_dir() / "vllm-check" / f"vllm-{version}", gpu_pins(version).requirements)
    return python, dict(os.environ), "cuda"


@pytest.mark.parametrize("version", gpu_versions()[1:])
def test_every_other_pin_accepts_its_plans_arguments(version: str, gpu_host: Path, tmp_path: Path) -> None:
    deployments = _render_cases(tmp_path / "deployments", vllm_version=version)
    assert {d.vllm_version for d in deployments.values()} == {version}
    python, env, platform = _release_python(version)
    env |= {
        "LD_LIBRARY_PATH": str(gpu_host),
        NVML_STANDIN_CONFIG_ENV: str(gpu_host / "inventory.json"),
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("R4B_DEBUG", None)
    done = subprocess.run(
        [str(python), str(CHECK_SCRIPT)],
        input=json.dumps(_request(deployments, version)),
        env=env,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    # The host reaches PyPI but not the Hub: offline, so no lookup waits for a timeout.
    _assert_report(_report(done.returncode, done.stdout, done.stderr), deployments, version, platform, offline=True)


# ----------------------------------------------------------------------------- replicas: the router in the image

ROUTER_PYTHON = "/opt/router/bin/python"  # templates/blocks/router.j2's venv


def test_the_replicas_image_adds_vllms_router_and_accepts_its_flags(
    docker_client, docker_labels: dict, gpu_image: str, gpu_host: Path, tmp_path: Path
) -> None:
    """A plan with replicas renders the GPU Dockerfile plus one step (vLLM's router in a venv of its
    own, from PyPI), so its build reuses every layer of the one-engine image; in the built image the
    router's own parser reads the arguments compose gives it (worker URLs, policy, start-up timeout)."""
    from r4b_deploy.launch.docker_build import build_image
    from r4b_deploy.launch.docker_client import EngineConnection

    deployment = write_deployment(
        make_plan(PlanRequest(gpu="A100-40GB:8")), RenderOptions(), tmp_path / "replicas", environ={}
    )
    assert deployment.plan.replica_count == 8 and deployment.router is not None
    lines: list[str] = []
    result = build_image(EngineConnection(docker_client), deployment, lambda line: lines.append(line.text))
    print(f"\nreplicas GPU image {result.image_tag}: {result.steps_rebuilt} steps rebuilt, {result.duration_s:.0f} s")
    log = "\n".join(lines)
    # Only the router's step ran pip: vLLM's layers came from the one-engine image's build cache.
    assert "Collecting vllm-router==" in log and "Collecting vllm==" not in log, log[-3000:]
    router = deployment.router
    script = (
        "import json, sys\n"
        "from vllm_router.launch_router import parse_router_args\n"
        "a = parse_router_args(sys.argv[1:])\n"
        "print(json.dumps({'workers': a.worker_urls, 'port': a.port, 'policy': a.policy,"
        " 'startup': a.worker_startup_timeout_secs}))\n"
    )
    try:
        code, out, err = _run_in_image(
            docker_client, docker_labels, result.image_tag, gpu_host, [ROUTER_PYTHON, "-c", script, *router.command]
        )
        assert code == 0, err[-2000:]
        parsed = json.loads(out.strip().splitlines()[-1])
        assert parsed["workers"] == [f"http://{r.name}:8000" for r in deployment.replicas]
        assert parsed["port"] == router.container_port and parsed["startup"] == router.health.start_period_s
        code, out, err = _run_in_image(
            docker_client, docker_labels, result.image_tag, gpu_host, [router.entrypoint[0], "--help"]
        )
        assert code == 0 and "--worker-urls" in out, err[-2000:]
    finally:
        docker_client.images.remove(result.image_tag, noprune=False)  # the layers below stay: gpu_image's
