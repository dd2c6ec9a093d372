"""`r4b-deploy render` end to end through the real CLI entry point (exit codes, output, no secrets)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from render_plans import make_wheelhouse

from r4b_deploy.cli.main import main
from r4b_deploy.deployment import Deployment, load_deployment, read_env_file
from r4b_deploy.errors import ExitCode


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_render_prints_the_folder_command_and_key_location_never_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_HF", "hf_cliTokenValue")
    out = tmp_path / "deploy"
    code, stdout, stderr = _run(
        capsys,
        "render",
        "--gpu",
        "L4",
        "--out",
        str(out),
        "--hf-cache",
        str(tmp_path / "hf"),
        "--hf-token-env",
        "MY_HF",
        "--extra-vllm-arg",
        "--enforce-eager",
    )
    assert code == ExitCode.OK, stderr
    secrets = read_env_file(out)
    assert secrets["HF_TOKEN"] == "hf_cliTokenValue"
    flat = " ".join(stdout.split())  # rich may wrap long lines
    assert f"API key stored in {out / 'r4b.env'} (0600)" in flat
    assert "vllm serve YannQi/R-4B" in flat
    assert "--enforce-eager" in flat
    assert str(out) in flat
    for secret in secrets.values():
        assert secret not in stdout + stderr
    assert stat.S_IMODE((out / "r4b.env").stat().st_mode) == 0o600


def test_render_json_prints_the_deployment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    code, stdout, stderr = _run(
        capsys, "render", "--gpu", "A100-40GB:8", "--out", str(out), "--hf-cache", str(tmp_path / "hf"), "--json"
    )
    assert code == ExitCode.OK, stderr
    printed = Deployment.model_validate(json.loads(stdout))
    assert printed == load_deployment(out)
    # Issue 10: eight GPUs plan eight one-GPU replicas, not one tp8 engine.
    assert (printed.plan.profile, printed.plan.replica_count) == ("medium", 8)
    assert read_env_file(out)["VLLM_API_KEY"] not in stdout


def test_render_rehearsal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    wheels = make_wheelhouse(tmp_path / "wheels")
    code, _, stderr = _run(capsys, "render", "--rehearsal", "--out", str(out), "--wheelhouse", str(wheels), "--json")
    assert code == ExitCode.OK, stderr
    deployment = load_deployment(out)
    assert deployment.rehearsal
    assert (out / "rehearsal" / "fix_vllm_cpu.py").is_file()


@pytest.mark.parametrize(
    "bad",
    [
        ["--served-model-name", "r4b;id"],
        ["--model", "$(id)/x"],
        ["--port", "0"],
        ["--extra-vllm-arg", "--x", "--extra-vllm-arg", "`id`"],
        ["--hf-cache", "/srv/hf\ncache"],
        ["--ulimit", "memlock"],
        ["--shm-size", "1m"],
        ["--base-image", "img;id"],
    ],
)
def test_bad_render_option_exits_4_and_writes_nothing(
    bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    code, _, stderr = _run(capsys, "render", "--gpu", "L4", "--out", str(out), *bad)
    assert code == ExitCode.USAGE
    assert stderr.startswith("error: ")
    assert not out.exists()


def test_hand_edit_refused_then_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    args = ["render", "--gpu", "L4", "--out", str(out), "--hf-cache", str(tmp_path / "hf")]
    assert _run(capsys, *args)[0] == ExitCode.OK
    (out / "Dockerfile").write_text("FROM scratch\n")
    code, _, stderr = _run(capsys, *args)
    assert code == ExitCode.USAGE
    assert "changed by hand" in stderr and "--force" in stderr
    assert _run(capsys, *args, "--force")[0] == ExitCode.OK
    assert (out / "Dockerfile").read_text().startswith("# Rendered by r4b-deploy")
