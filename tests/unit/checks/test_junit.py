"""JUnit XML that CI systems read: well-formed, counts right, times in seconds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from support import file_mode, umask

from r4b_deploy.checks.junit import junit_xml, write_junit
from r4b_deploy.checks.report import write_json
from r4b_deploy.checks.smoke import CheckResult, SmokeReport


def make_report() -> SmokeReport:
    checks = [
        CheckResult(name="health", level="protocol", status="pass", reason="/health answered 200", time_ms=12.5),
        CheckResult(
            name="models", level="protocol", status="fail", reason="model 'r4b' is not served & <x>", time_ms=3
        ),
        CheckResult(
            name="text", level="protocol", status="fail", reason="bad \x00\x1b bytes from the server", time_ms=1500
        ),
        CheckResult(name="image_answer", level="model", status="skip", reason="--protocol-only", time_ms=0),
    ]
    return SmokeReport(
        url="http://127.0.0.1:8000",
        served_model_name="r4b",
        protocol_only=True,
        modes=["auto", "long", "short"],
        timeout_s=60,
        started_at=datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=timezone.utc),
        duration_ms=2345.6,
        checks=checks,
    )


def test_junit_parses_and_counts() -> None:
    root = ET.fromstring(junit_xml(make_report()))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2" and suite.get("skipped") == "1"
    assert suite.get("errors") == "0"
    assert suite.get("time") == "2.346"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["health", "models", "text", "image_answer"]
    assert [c.get("classname") for c in cases] == ["smoke.protocol"] * 3 + ["smoke.model"]
    assert [c.get("time") for c in cases] == ["0.013", "0.003", "1.500", "0.000"]
    assert cases[0].find("failure") is None and cases[0].find("skipped") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "model 'r4b' is not served & <x>"
    assert cases[3].find("skipped") is not None and cases[3].find("skipped").get("message") == "--protocol-only"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["url"] == "http://127.0.0.1:8000" and props["protocol_only"] == "true"


def test_characters_xml_forbids_are_replaced() -> None:
    root = ET.fromstring(junit_xml(make_report()))
    failure = root.find("testsuite").findall("testcase")[2].find("failure")
    assert failure.get("message") == "bad ?? bytes from the server"


def test_written_files_parse(tmp_path: Path) -> None:
    report = make_report()
    write_junit(report, tmp_path / "sub" / "smoke.xml")
    write_json(report, tmp_path / "smoke.json")
    assert ET.parse(tmp_path / "sub" / "smoke.xml").getroot().find("testsuite").get("tests") == "4"
    assert SmokeReport.model_validate_json((tmp_path / "smoke.json").read_text()).failed == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_report_files_are_readable_by_all_whatever_the_umask(tmp_path: Path) -> None:
    """Bug 4: smoke.json and junit.xml were 0600 while bench.json was 0644; reports hold no secret."""
    report = make_report()
    with umask(0o077):
        write_json(report, tmp_path / "smoke.json")
        write_junit(report, tmp_path / "junit.xml")
    assert {p.name: file_mode(p) for p in tmp_path.iterdir()} == {"smoke.json": 0o644, "junit.xml": 0o644}
