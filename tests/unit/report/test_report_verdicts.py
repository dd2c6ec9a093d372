"""Gate verdicts with their intervals, on the HTML page and in the bench JUnit: pass, fail, and
inconclusive (the interval straddles the limit), never an inconclusive gate shown as failed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from report_samples import sample_verdicts
from test_report_page import Cells

from r4b_deploy.bench.writers import result_json
from r4b_deploy.report.ci import bench_junit_xml
from r4b_deploy.report.page import bench_sections, render_report_html

UNDECIDED = "p95_ttft_ms <= 71"


def _gates_section(gates: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    report = sample_verdicts() if gates is None else sample_verdicts(gates)
    _, gates_section = bench_sections(result_json(report))
    return report, gates_section


def test_the_sample_has_every_verdict_with_an_interval() -> None:
    report = sample_verdicts()
    assert {s.verdict for s in report.slo} == {"pass", "fail", "inconclusive"}
    (undecided,) = [s for s in report.slo if s.verdict == "inconclusive"]
    assert (undecided.gate, undecided.level) == (UNDECIDED, "c1")
    assert undecided.ci_low < undecided.threshold < undecided.ci_high


def test_a_gate_section_without_a_failure_is_inconclusive_not_failed() -> None:
    _, section = _gates_section(("p95_ttft_ms<=71",))  # inconclusive at c1, failed at c4 and c16
    assert section.verdict == "fail"
    report, section = _gates_section(("p95_ttft_ms<=1000",))
    assert section.verdict == "pass"
    undecided = report.model_copy(update={"slo": [s for s in sample_verdicts().slo if s.verdict != "fail"]})
    _, section = bench_sections(result_json(undecided))
    assert section.verdict == "inconclusive"
    page = render_report_html(bench=undecided)
    assert '<span class="badge inconclusive" id="overall">inconclusive</span>' in page


def test_each_gate_shows_its_verdict_then_its_figure_and_interval() -> None:
    report, section = _gates_section()
    (table,) = section.tables
    assert table.head[:6] == ["verdict", "gate", "level", "value", "ci_low", "ci_high"]
    assert "passed" not in table.head  # an inconclusive gate is not "passed: no"
    verdicts = [(row[0].text, row[0].css) for row in table.rows]
    assert verdicts == [(s.verdict, s.verdict) for s in report.slo]
    # What an undecided gate means, in the terminal's words: how many runs would decide it.
    (line,) = [i for i in section.items if i.startswith("inconclusive:")]
    assert "p95_ttft_ms = 70.9 at c1, 95% interval" in line and "--repeat" in line
    assert any(i.startswith("fail: output_throughput = 40 at c1") for i in section.items)


def test_the_interval_on_the_page_is_the_jsons() -> None:
    report = sample_verdicts()
    parser = Cells()
    parser.feed(render_report_html(bench=report))
    for i, gate in enumerate(result_json(report)["slo"]):
        for key in ("value", "ci_low", "ci_high", "threshold"):
            assert json.loads(parser.values[f"slo.{i}.{key}"]) == gate[key], (i, key)


def test_junit_says_each_verdict_with_its_interval() -> None:
    report = sample_verdicts()
    root = ET.fromstring(bench_junit_xml(report))
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    held = cases[("bench.c1", "p95_ttft_ms <= 1000")]
    assert held.find("failure") is None and held.find("error") is None
    failed = cases[("bench.c1", "output_throughput >= 100000")].find("failure")
    assert failed.get("message").startswith(
        "output_throughput = 40 at c1 (wanted >= 100000); 95% interval 33.33..43.33"
    )
    undecided = cases[("bench.c1", UNDECIDED)].find("error")
    message = undecided.get("message")
    assert message.startswith("inconclusive: p95_ttft_ms = 70.9 at c1, 95% interval 64.2..72 straddles <= 71")
    assert "(--repeat " in message
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("12", "5", "1")
