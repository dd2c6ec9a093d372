"""Write a smoke report as JUnit XML, the format CI systems read (testsuite/testcase, seconds)."""

from __future__ import annotations

import re
from pathlib import Path

from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic
from r4b_deploy.checks.smoke import SmokeReport

SUITE_NAME = "r4b-deploy smoke"
CLASSNAME_PREFIX = "smoke"
MS_PER_S = 1000.0
# Characters XML 1.0 forbids even escaped; a server's error text may carry them.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_FORBIDDEN.sub("?", text)


def _seconds(ms: float) -> str:
    return f"{ms / MS_PER_S:.3f}"


def junit_xml(report: SmokeReport) -> str:
    """One <testsuite> in <testsuites>; a failed check is a <failure>, a skipped one <skipped>."""
    import xml.etree.ElementTree as ET

    root = ET.Element(
        "testsuites",
        name=SUITE_NAME,
        tests=str(len(report.checks)),
        failures=str(report.failed),
        errors="0",
        skipped=str(report.skipped),
        time=_seconds(report.duration_ms),
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=SUITE_NAME,
        tests=str(len(report.checks)),
        failures=str(report.failed),
        errors="0",
        skipped=str(report.skipped),
        time=_seconds(report.duration_ms),
        timestamp=report.started_at.replace(microsecond=0).isoformat(),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("url", report.url),
        ("served_model_name", report.served_model_name),
        ("protocol_only", str(report.protocol_only).lower()),
        ("modes", ",".join(report.modes)),
        ("timeout_s", f"{report.timeout_s:g}"),
    ):
        ET.SubElement(props, "property", name=name, value=_xml_safe(value))
    for check in report.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{CLASSNAME_PREFIX}.{check.level}",
            name=check.name,
            time=_seconds(check.time_ms),
        )
        if check.status == "fail":
            reason = _xml_safe(check.reason)
            failure = ET.SubElement(case, "failure", message=reason, type="CheckFailed")
            failure.text = reason
        elif check.status == "skip":
            ET.SubElement(case, "skipped", message=_xml_safe(check.reason))
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_safe(check.reason)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: SmokeReport, path: Path) -> None:
    write_text_atomic(path, junit_xml(report), mode=REPORT_FILE_MODE)
