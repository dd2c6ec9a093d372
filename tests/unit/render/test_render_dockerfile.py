"""The Dockerfile's structure, without a Docker engine: instructions, stages, order, build context.

Real builds are the docker runtime's integration tests; these catch a broken or leaky file early.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from render_plans import golden_cases, heavy_plan, light_plan, make_ca_bundle, make_wheelhouse, rehearsal_plan

from r4b_deploy.deployment import DOCKERFILE_NAME, DOCKERIGNORE_NAME
from r4b_deploy.pins import gpu_pins, rehearsal_profile
from r4b_deploy.render.deployment import render_files, write_deployment
from r4b_deploy.render.options import RenderOptions

KNOWN = {"FROM", "RUN", "COPY", "ENV", "LABEL", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "ARG", "WORKDIR", "USER"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped, as Docker reads them."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword, " ".join(args.split())))
    assert not pending, "a continuation line runs off the end of the file"
    return out


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for step in steps:
        if step[0] == "FROM":
            result.append([])
        result[-1].append(step)
    return result


@pytest.fixture(params=["light", "heavy", "tp8", "rehearsal", "light-custom"])
def dockerfile(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    plan, kwargs = golden_cases(tmp_path)[request.param]
    return request.param, render_files(plan, RenderOptions(**kwargs), tmp_path / "d")[DOCKERFILE_NAME]


def test_structure(dockerfile: tuple[str, str]) -> None:
    _, text = dockerfile
    steps = instructions(text)
    assert all(keyword in KNOWN for keyword, _ in steps), [k for k, _ in steps if k not in KNOWN]
    assert steps[0][0] == "FROM"
    assert steps[0][1] == f"{gpu_pins().base_image} AS base"
    final = stages(steps)[-1]
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    entrypoint = json.loads(entrypoints[0])  # exec form: no shell between Docker and vLLM
    assert entrypoint[0].endswith("/vllm") and entrypoint[1:] == ["serve"]
    assert not any(keyword == "CMD" for keyword, _ in steps), "flags belong to run time, not to a CMD"
    assert ("EXPOSE", "8000") in final
    healthcheck = next(args for keyword, args in final if keyword == "HEALTHCHECK")
    assert "curl -fsS http://127.0.0.1:8000/health" in healthcheck


def test_no_vllm_flag_or_run_value_in_the_image(dockerfile: tuple[str, str]) -> None:
    _, text = dockerfile
    for flag in ("--max-model-len", "--served-model-name", "--gpu-memory-utilization", "--limit-mm-per-prompt"):
        assert flag not in text
    assert "VLLM_API_KEY" not in text and "HF_TOKEN" not in text


def test_gpu_image_records_the_pins() -> None:
    text = render_files(light_plan(), RenderOptions(hf_cache_dir="/srv/hf"), "/srv/d")[DOCKERFILE_NAME]
    pins = gpu_pins()
    steps = instructions(text)
    labels = " ".join(args for keyword, args in steps if keyword == "LABEL")
    assert f'io.r4b-deploy.cuda-runtime="{pins.cuda_runtime}"' in labels
    assert f'io.r4b-deploy.min-driver-version="{pins.min_driver_version}"' in labels
    assert f'io.r4b-deploy.vllm-version="{pins.vllm_version}"' in labels
    assert f"driver must be >= {pins.min_driver_version}" in text  # and a comment says why
    install = next(args for keyword, args in steps if keyword == "RUN" and "pip install" in args)
    assert f"vllm=={pins.vllm_version}" in install
    assert f"python{pins.python} -m venv" in install
    apt = next(args for keyword, args in steps if keyword == "RUN" and "apt-get install" in args)
    for package in (f"python{pins.python}-venv", "curl", "ca-certificates"):
        assert package in apt.split()


def test_the_plans_vllm_release_is_installed_with_its_own_needs() -> None:
    options = RenderOptions(hf_cache_dir="/srv/hf")
    older = gpu_pins("0.19.1")
    text = render_files(heavy_plan().model_copy(update={"vllm_version": "0.19.1"}), options, "/srv/d")[DOCKERFILE_NAME]
    assert "vllm==0.19.1" in text and f"vllm=={gpu_pins().vllm_version}" not in text
    labels = " ".join(args for keyword, args in instructions(text) if keyword == "LABEL")
    assert f'io.r4b-deploy.cuda-runtime="{older.cuda_runtime}"' in labels  # 12.8, not the newest's 13.0
    assert f'io.r4b-deploy.min-driver-version="{older.min_driver_version}"' in labels
    assert f"CUDA {older.cuda_runtime.split('.')[0]}.x minor-version" in text


def test_rehearsal_image_is_multi_stage_and_leaves_the_wheels_behind(tmp_path: Path) -> None:
    options = RenderOptions(hf_cache_dir="/srv/hf", wheelhouse=make_wheelhouse(tmp_path / "w"))
    text = render_files(rehearsal_plan(), options, tmp_path / "d")[DOCKERFILE_NAME]
    base, build, final = stages(instructions(text))
    profile = rehearsal_profile()
    apt = next(args for keyword, args in base if keyword == "RUN")
    # The base image has no Python: the image installs the pinned one and its venv module from apt.
    for package in (f"python{profile.min_python}", f"python{profile.min_python}-venv", "libnuma1", "curl"):
        assert package in apt.split()
    assert "ca-certificates" in apt.split()
    assert any(args.startswith(f"python{profile.min_python} -m venv ") for keyword, args in build if keyword == "RUN")
    assert ("COPY", "wheelhouse /wheels") in build
    install = next(args for keyword, args in build if keyword == "RUN" and "pip install" in args)
    assert "--no-index --find-links /wheels" in install
    assert all(requirement in install.split() for requirement in profile.packages)
    fix = next(args for keyword, args in build if keyword == "RUN" and "fix_vllm_cpu.py" in args)
    assert fix.startswith("/opt/venv/bin/python ")
    assert fix.split("--uninstall ")[1].split(" &&")[0].split() == profile.uninstall
    tiny = next(args for keyword, args in build if keyword == "RUN" and "tiny_model.py" in args)
    assert tiny.split()[-1] == rehearsal_plan().vllm.model
    # The final stage copies the venv and the model from the build stage, never the wheelhouse.
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", f"--from=build {tiny.split()[-1]} {tiny.split()[-1]}"]
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    for key, value in profile.env.items():
        assert f'{key}="{value}"' in env


def test_ca_bundle_comes_before_apt_and_pip(tmp_path: Path) -> None:
    options = RenderOptions(hf_cache_dir="/srv/hf", ca_bundle=make_ca_bundle(tmp_path / "ca.pem"))
    for plan in (light_plan(), rehearsal_plan()):
        steps = instructions(render_files(plan, options, tmp_path / "d")[DOCKERFILE_NAME])
        copy_ca = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and a.startswith("ca-bundle.pem "))
        apt = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "apt-get" in a)
        pip = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
        assert copy_ca < apt < pip
        env = " ".join(a for k, a in steps[:apt] if k == "ENV")
        for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
            assert variable in env


def _context(folder: Path) -> set[str]:
    """What the docker CLI / docker-py would send to the daemon, per the folder's .dockerignore."""
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (folder / DOCKERIGNORE_NAME).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {p for p in exclude_paths(str(folder), patterns, dockerfile=DOCKERFILE_NAME) if (folder / p).is_file()}


def test_build_context_is_only_what_the_dockerfile_copies(tmp_path: Path) -> None:
    options = RenderOptions(
        hf_cache_dir="/srv/hf",
        wheelhouse=make_wheelhouse(tmp_path / "w"),
        ca_bundle=make_ca_bundle(tmp_path / "ca.pem"),
    )
    deployment = write_deployment(rehearsal_plan(), options, tmp_path / "d", environ={})
    (tmp_path / "d" / "server.log").write_text("runtime files never reach the daemon\n")
    context = _context(deployment.dir)
    expected = {"Dockerfile", "ca-bundle.pem", "rehearsal/fix_vllm_cpu.py", "rehearsal/tiny_model.py"}
    expected |= {f"wheelhouse/{name}" for name in deployment.wheels}
    assert context - {DOCKERIGNORE_NAME} == expected
    assert "r4b.env" not in context


def test_every_copy_source_is_in_the_build_context(tmp_path: Path) -> None:
    options = RenderOptions(
        hf_cache_dir="/srv/hf", wheelhouse=make_wheelhouse(tmp_path / "w"), ca_bundle=make_ca_bundle(tmp_path / "c")
    )
    for plan in (light_plan(), rehearsal_plan()):
        folder = tmp_path / plan.profile
        write_deployment(plan, options, folder, environ={})
        context = _context(folder)
        for keyword, args in instructions((folder / DOCKERFILE_NAME).read_text()):
            if keyword == "COPY" and not args.startswith("--from="):
                source = args.split()[0]
                assert any(p == source or p.startswith(source + "/") for p in context), source
