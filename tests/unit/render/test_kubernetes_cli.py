"""`r4b-deploy render --target kubernetes` through the real CLI: files, commands, no secrets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support import file_mode

from r4b_deploy.cli.main import main
from r4b_deploy.errors import ExitCode
from r4b_deploy.render.kubernetes import MARKER_NAME, TEMPLATES

KNOWN_HF_TOKEN = "hf_knownTokenValue0123456789"
KNOWN_API_KEY = "knownApiKeyValue-0123456789abcdef"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _render(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "render", "--target", "kubernetes", "--gpu", "H100", "--out", str(out), *extra)


def test_no_secret_reaches_a_manifest_or_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", KNOWN_HF_TOKEN)
    monkeypatch.setenv("VLLM_API_KEY", KNOWN_API_KEY)
    out = tmp_path / "k8s"
    code, stdout, stderr = _render(capsys, out, "--image", "registry.example.com/r4b:1.0", "--replicas", "4")
    assert code == ExitCode.OK, stderr
    written = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    assert sorted(str(p.relative_to(out)) for p in written) == sorted([*TEMPLATES, MARKER_NAME])
    code, json_out, _ = _render(capsys, out, "--image", "registry.example.com/r4b:1.0", "--json")
    assert code == ExitCode.OK
    for text in [*written.values(), stdout, stderr, json_out]:
        assert KNOWN_HF_TOKEN not in text and KNOWN_API_KEY not in text
    # The printed command makes the Secret from the shell's own values: the token by its variable.
    command = json.loads(json_out)["secret_command"]
    assert "kubectl -n r4b create secret generic r4b-secrets" in command
    assert '--from-literal=HF_TOKEN="$HF_TOKEN"' in command and "--from-literal=VLLM_API_KEY=" in command
    assert "create secret generic" in stdout and "kubectl apply -f" in stdout


def test_the_token_is_left_out_of_the_command_when_its_variable_is_unset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, json_out, stderr = _render(capsys, tmp_path / "k8s", "--json")
    assert code == ExitCode.OK, stderr
    assert "HF_TOKEN" not in json.loads(json_out)["secret_command"]


def test_files_are_listed_with_their_digests_and_re_rendered_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k8s"
    assert _render(capsys, out)[0] == ExitCode.OK
    for line in (out / MARKER_NAME).read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
        assert file_mode(out / name) == 0o644
    # Rendering again into its own folder is fine; over a hand edit only with --force.
    assert _render(capsys, out, "--replicas", "3")[0] == ExitCode.OK
    (out / "vllm.yaml").write_text((out / "vllm.yaml").read_text() + "# mine\n")
    code, _, stderr = _render(capsys, out)
    assert code == ExitCode.USAGE and "vllm.yaml changed by hand" in stderr
    assert (out / "vllm.yaml").read_text().endswith("# mine\n")
    assert _render(capsys, out, "--force")[0] == ExitCode.OK
    assert not (out / "vllm.yaml").read_text().endswith("# mine\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, stderr = _render(capsys, foreign)
    assert code == ExitCode.USAGE and "is not empty" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("render", "--gpu", "H100", "--min-replicas", "3"), "--min-replicas applies to --target kubernetes"),
        (("render", "--target", "kubernetes", "--gpu", "H100", "--public"), "--public applies to --target docker only"),
        (("render", "--target", "kubernetes", "--rehearsal"), "CPU rehearsal"),
        (
            ("render", "--target", "kubernetes", "--gpu", "H100", "--min-replicas", "4", "--max-replicas", "2"),
            "--min-replicas 4 is more than --max-replicas 2",
        ),
    ],
)
def test_options_for_the_other_target_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, stderr = _run(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == ExitCode.USAGE
    assert message in stderr.replace("\n", " ")


def test_the_kubernetes_options_are_exactly_renders_extra_parameters() -> None:
    """The list up's option test leaves out must name every --target kubernetes option, no more."""
    import click

    from r4b_deploy.cli.main import cli
    from r4b_deploy.cli.render_kubernetes import RENDER_ONLY_PARAMS

    def params(name: str) -> set[str]:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        return {p.name for p in command.params if p.name is not None}

    assert params("render") - params("up") - {"out_dir", "force", "as_json"} == set(RENDER_ONLY_PARAMS)


def test_a_tensor_parallel_plan_is_told_that_one_gpu_replicas_serve_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --profile tp8: by default eight GPUs plan one-GPU replicas (issue 10), which need no such note.
    code, json_out, stderr = _run(
        capsys,
        "render",
        "--target",
        "kubernetes",
        "--gpu",
        "A100-40GB:8",
        "--profile",
        "tp8",
        "--out",
        str(tmp_path / "k"),
        "--json",
    )
    assert code == ExitCode.OK, stderr
    notes = json.loads(json_out)["notes"]
    assert any("each replica takes 8 GPUs" in note and "--gpu NAME:1" in note for note in notes)
    code, json_out, _ = _run(
        capsys, "render", "--target", "kubernetes", "--gpu", "A100-40GB", "--out", str(tmp_path / "one"), "--json"
    )
    assert not any("each replica takes" in note for note in json.loads(json_out)["notes"])
