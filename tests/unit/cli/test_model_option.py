"""`--model NAME|DIR` through the real CLI: plan and render name the chosen model, serve a folder
from its own path, and refuse what cannot be planned with exit 4 and what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from model_folders import LLAMA_CONFIG, LLAMA_PARAMETERS, model_folder

from r4b_deploy.cli.main import main
from r4b_deploy.deployment import COMPOSE_NAME, load_deployment
from r4b_deploy.errors import ExitCode


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plan_a_folder_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = model_folder(tmp_path, "Llama-3.1-8B", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    code, out, err = _run(capsys, "plan", "--gpu", "H100", "--model", str(folder), "--json")
    assert code == ExitCode.OK, err
    plan = json.loads(out)
    assert plan["model_name"] == "Llama-3.1-8B" and plan["model_architecture"] == "LlamaForCausalLM"
    assert plan["vllm"]["args"][0] == str(folder.resolve())
    assert "--limit-mm-per-prompt" not in plan["vllm"]["args"]
    code, out, err = _run(capsys, "plan", "--gpu", "H100", "--model", str(folder))
    assert code == ExitCode.OK, err
    assert out.startswith("Llama-3.1-8B plan: profile heavy")


def test_plan_the_qwen3_vl_spec_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "plan", "--gpu", "L4", "--model", "qwen3-vl-4b-thinking", "--json")
    assert code == ExitCode.OK, err
    args = json.loads(out)["vllm"]["args"]
    assert args[:3] == ["Qwen/Qwen3-VL-4B-Thinking", "--served-model-name", "qwen3-vl-4b-thinking"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("org/unknown-model", "error: --model org/unknown-model: neither a folder nor a model the planner knows"),
        ("./missing", "error: --model ./missing: no such folder"),
    ],
)
def test_unknown_model_exits_4(model: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "plan", "--gpu", "L4", "--model", model)
    assert code == ExitCode.USAGE
    assert err.startswith(message)


def test_unmodelled_architecture_exits_4_saying_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path, "m", {**LLAMA_CONFIG, "architectures": ["MambaForCausalLM"]}, parameters=1)
    code, _, err = _run(capsys, "plan", "--gpu", "L4", "--model", str(folder))
    assert code == ExitCode.USAGE
    assert "architecture MambaForCausalLM is not one the planner models" in err
    assert "its memory terms are unknown" in err


def test_render_serves_a_folder_from_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = model_folder(tmp_path, "llama", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    out = tmp_path / "deploy"
    code, _, err = _run(
        capsys, "render", "--gpu", "H100", "--model", str(folder), "--out", str(out), "--hf-cache", str(tmp_path / "hf")
    )
    assert code == ExitCode.OK, err
    deployment = load_deployment(out)
    assert deployment.model == str(folder.resolve()) and deployment.served_model_name == "llama"
    assert deployment.plan.model_name == "llama"
    service = next(iter(yaml.safe_load((out / COMPOSE_NAME).read_text())["services"].values()))
    assert service["command"][0] == str(folder.resolve())
    assert f"{folder.resolve()}:{folder.resolve()}:ro" in service["volumes"]


def test_render_a_named_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    code, _, err = _run(capsys, "render", "--gpu", "L4", "--model", "qwen3-vl-4b-thinking", "--out", str(out))
    assert code == ExitCode.OK, err
    command = load_deployment(out).container.command
    assert command[0] == "Qwen/Qwen3-VL-4B-Thinking" and "--trust-remote-code" not in command
    assert command[command.index("--reasoning-parser") + 1] == "deepseek_r1"


def test_render_refuses_a_folder_path_compose_cannot_mount(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = model_folder(tmp_path, "my model", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    out = tmp_path / "deploy"
    code, _, err = _run(capsys, "render", "--gpu", "H100", "--model", str(folder), "--out", str(out))
    assert code == ExitCode.USAGE
    assert "error: the model folder" in err and "contains a space" in err
    assert not out.exists()
