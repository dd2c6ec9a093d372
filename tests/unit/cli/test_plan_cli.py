"""`r4b-deploy plan`: exit codes, the JSON shape, the human summary, the shared planning options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from r4b_deploy.cli.main import main
from r4b_deploy.cli.options import PLANNING_KEYS, plan_request_from, planning_options
from r4b_deploy.errors import UsageError
from r4b_deploy.planning.plan import PlanRequest


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--gpu", "L4", "--json"], 0),
        (["--gpu", "A100-40GB:8", "--json"], 0),
        (["--rehearsal", "--json"], 0),
        (["--gpu", "T4", "--profile", "heavy"], 3),
        # Issue 9: images no longer cost start-up memory (vLLM profiles one); L4 now holds 40,960 tokens.
        (["--gpu", "T4", "--max-model-len", "32768", "--images-per-prompt", "4"], 3),
        (["--gpu", "L4", "--profile", "tp8"], 3),
        (["--gpu", "L4", "--profile", "enormous"], 4),
        (["--gpu", "L4", "--max-model-len", "0"], 4),
        (["--gpu", "L4", "--max-model-len", "50000"], 4),
        (["--gpu", "L4", "--gpu-memory-utilization", "1.5"], 4),
        (["--gpu", "L4", "--kv-cache-dtype", "int4"], 4),
        (["--gpu", "L4", "--inventory", "inventory.json"], 4),
        (["--gpu", "NoSuchGPU"], 4),
        (["--rehearsal", "--gpu", "L4"], 4),
    ],
)
def test_exit_codes(capsys: pytest.CaptureFixture[str], args: list[str], code: int) -> None:
    got, _out, err = run(capsys, *args)
    assert got == code, err
    if code:
        assert "error: " in err
        assert "Traceback" not in err


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--gpu", "L4", "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["profile"] == "light"
    assert {"name", "memory_total_bytes", "compute_capability"} <= set(plan["gpus"][0])
    vllm_keys = {"args", "tensor_parallel_size", "max_model_len", "max_num_seqs", "gpu_memory_utilization", "dtype"}
    assert vllm_keys <= set(plan["vllm"])
    assert {"weights_bytes", "kv_bytes_per_token", "kv_cache_bytes", "kv_tokens"} <= set(plan["memory"])
    assert isinstance(plan["warnings"], list) and plan["reasons"]
    assert plan["vllm"]["args"][0] == "YannQi/R-4B"


def test_infeasible_message_states_shortfall(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--gpu", "T4", "--profile", "heavy")
    assert code == 3
    assert "short by" in err and "GB" in err
    assert "To fix:" in err


def test_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--gpu", "T4")
    assert code == 0
    for expected in ("profile light", "(reduced)", "vllm serve YannQi/R-4B", "KV cache", "Warnings", "medium", "tp8"):
        assert expected in out, expected


def test_json_path_is_fast_to_import() -> None:
    # The --json path must not load rich, jinja2, docker or aiohttp (startup time).
    code = (
        "import sys, io, contextlib\n"
        "from r4b_deploy.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['plan', '--gpu', 'L4', '--json']) == 0\n"
        "heavy = {'rich', 'jinja2', 'docker', 'aiohttp', 'matplotlib'}\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_inventory_file_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from r4b_deploy.hardware.catalog import inventory_from_catalog

    path = tmp_path / "inventory.json"
    path.write_text(inventory_from_catalog("H100-80GB").model_dump_json())
    code, out, _ = run(capsys, "--inventory", str(path), "--json")
    assert code == 0
    assert json.loads(out)["profile"] == "heavy"


def test_plan_request_from_pops_planning_keys() -> None:
    kwargs = {key: None for key in PLANNING_KEYS} | {"gpu": "L4", "rehearsal": False, "out": "dir", "force": True}
    req = plan_request_from(kwargs)
    assert req == PlanRequest(gpu="L4")
    assert kwargs == {"out": "dir", "force": True}


def test_plan_request_from_ignores_other_keywords() -> None:
    req = plan_request_from(gpu="L4", inventory=None, max_model_len=8192, out="dir")
    assert req == PlanRequest(gpu="L4", max_model_len=8192)


def test_plan_request_validation_is_one_line_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        plan_request_from(gpu="L4", gpu_memory_utilization=2.0)
    assert info.value.message.startswith("--gpu-memory-utilization 2.0")
    assert "\n" not in info.value.message


def test_planning_options_on_another_command() -> None:
    seen: dict[str, object] = {}

    @click.command()
    @planning_options
    @click.option("--out")
    def other(**kwargs: object) -> None:
        seen["req"] = plan_request_from(kwargs)
        seen["rest"] = kwargs

    result = CliRunner().invoke(other, ["--gpu", "A100-80GB:8", "--profile", "heavy", "--out", "x", "--rehearsal"])
    assert result.exit_code == 0, result.output
    assert seen["req"] == PlanRequest(gpu="A100-80GB:8", profile="heavy", rehearsal=True)
    assert seen["rest"] == {"out": "x"}


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_the_serve_command_pastes_as_one_command_at_any_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    """rich wrapped the `vllm serve` line at the terminal's width: pasted, its pieces ran as
    separate commands. The printed block must parse back to the exact argument list."""
    import shlex

    code, out, _ = run(capsys, "--gpu", "L4", "--json")
    assert code == 0
    args = json.loads(out)["vllm"]["args"]
    monkeypatch.setenv("COLUMNS", columns)
    code, out, _ = run(capsys, "--gpu", "L4")
    assert code == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("vllm serve"))
    block = [lines[start]]
    while block[-1].endswith("\\"):
        block.append(lines[start + len(block)])
    # A shell drops each backslash-newline: the block is one command line.
    assert shlex.split("\n".join(block).replace("\\\n", "")) == ["vllm", "serve", *args]
