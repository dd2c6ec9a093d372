"""docs/ci.md's workflow: valid YAML with both jobs, and every r4b-deploy command in it is one the
CLI accepts (options and values parsed by the commands themselves, nothing run)."""

from __future__ import annotations

import re
import shlex

import click
import yaml
from support import REPO_ROOT

from r4b_deploy.cli.main import cli

DOC = (REPO_ROOT / "docs" / "ci.md").read_text(encoding="utf-8")


def _workflow() -> dict:
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
    return yaml.safe_load(block)


def _r4b_commands() -> list[list[str]]:
    out = []
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).replace("\n", " ").split("&&"):
                line = line.split("||")[0].strip()
                if line.startswith("r4b-deploy "):
                    out.append(shlex.split(line)[1:])
    return out


def test_the_workflow_has_a_hosted_rehearsal_and_a_self_hosted_gpu_job() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["rehearsal"]["runs-on"].startswith("ubuntu-")
    assert "self-hosted" in jobs["gpu"]["runs-on"] and jobs["gpu"]["needs"] == "rehearsal"
    for job in jobs.values():
        uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
        assert uploads and uploads[0]["if"] == "always()"  # the reports, also when a gate failed
        assert any(s.get("if") == "always()" and "r4b-deploy down" in s.get("run", "") for s in job["steps"])


def test_every_command_in_the_workflow_parses() -> None:
    commands = _r4b_commands()
    assert {c[0] for c in commands} >= {"doctor", "up", "bench", "down", "plan"}
    for argv in commands:
        command = cli.get_command(click.Context(cli), argv[0])
        assert command is not None, argv
        command.make_context(argv[0], argv[1:])  # raises click.UsageError on an unknown option or bad value
