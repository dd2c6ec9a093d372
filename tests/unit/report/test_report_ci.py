"""CI outputs: the step summary GitHub shows, bench gates as JUnit XML, and `bench`'s options for them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from report_samples import HOSTILE, sample_bench

from r4b_deploy.cli.main import main
from r4b_deploy.report.ci import STEP_SUMMARY_MAX_BYTES, append_step_summary, bench_junit_xml, up_markdown


def test_no_step_summary_without_github() -> None:
    assert append_step_summary("# x", environ={}) is None


def test_the_step_summary_is_appended_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("# an earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(target)}
    assert append_step_summary("# bench", environ=env) == target
    append_step_summary("# up\n", environ=env)
    assert target.read_text() == "# an earlier step\n# bench\n# up\n"


def test_a_summary_over_githubs_limit_is_cut_with_a_note(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    append_step_summary("é" * STEP_SUMMARY_MAX_BYTES, environ={"GITHUB_STEP_SUMMARY": str(target)})
    text = target.read_text(encoding="utf-8")  # cut on a character boundary: still UTF-8
    assert len(text.encode()) < STEP_SUMMARY_MAX_BYTES + 200 and "over GitHub's limit" in text


def test_an_unwritable_step_summary_is_an_environment_problem(tmp_path: Path) -> None:
    from r4b_deploy.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem, match=r"GITHUB_STEP_SUMMARY=.*cannot append"):
        append_step_summary("# x", environ={"GITHUB_STEP_SUMMARY": str(tmp_path)})  # a folder


def test_bench_gates_are_one_test_case_each() -> None:
    report = sample_bench()
    root = ET.fromstring(bench_junit_xml(report))
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(report.slo) == 9  # 3 gates (2 given, the error rate) x 3 levels
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["output_throughput >= 100000"] * 3
    assert suite.get("failures") == "3" and suite.get("errors") == "0" and suite.get("tests") == "9"
    assert {c.get("classname") for c in cases} == {"bench.c1", "bench.c4", "bench.c16"}
    assert "output_throughput = 40 at c1 (wanted >= 100000)" in failed[0].find("failure").get("message")


def test_an_inconclusive_gate_is_an_error_not_a_pass() -> None:
    report = sample_bench()
    undecided = SimpleNamespace(**{**report.slo[0].model_dump(), "verdict": "inconclusive", "passed": False})
    root = ET.fromstring(bench_junit_xml(report.model_copy(update={"slo": [undecided]})))
    (case,) = root.iter("testcase")
    assert case.find("error") is not None and case.find("error").get("message").startswith("inconclusive:")


def test_ups_summary_says_what_failed_without_raw_markup() -> None:
    up = {
        "url": "http://127.0.0.1:8000",
        "profile": "light",
        "runtime": "docker",
        "smoke_passed": 5,
        "smoke_failed": 1,
        "smoke_failures": [f"models: {HOSTILE} | x"],
        "bench": "quick",
        "bench_gate_failures": [],
        "bench_summary": [{"level": "c1", "completed": 8, "p95_ttft_ms": 12.345}],
        "report_dir": "deploy/report",
        "files": ["up.json", "report.html"],
    }
    text = up_markdown(up)
    assert text.startswith("# r4b-deploy up: FAILED")
    assert "<script>" not in text and "&lt;script&gt;" in text and "\\| x" in text
    assert "| c1 | 8 | 12.35 |" in text


def test_bench_writes_html_junit_and_the_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import r4b_deploy.bench.runner as runner

    unjudged = sample_bench().model_copy(update={"slo": []})
    monkeypatch.setattr(runner, "run_bench", lambda config, on_progress=None: unjudged)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "out"
    args = ["bench", "--url", "http://127.0.0.1:9", "--no-progress", "--out", str(out)]
    args += ["--junit", str(tmp_path / "g.xml")]
    rc = main([*args, "--slo", "output_throughput>=100000", "--max-error-rate", "0.1"])
    assert rc == 1, capsys.readouterr().err  # the gate failed: written first, then the exit code
    assert (out / "report.html").read_text().count('class="badge fail"') >= 1
    assert ET.parse(tmp_path / "g.xml").getroot().get("failures") == "3"
    assert summary.read_text().startswith("# Benchmark: r4b")
