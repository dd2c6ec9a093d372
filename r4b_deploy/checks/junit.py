"""JUnit XML, the format CI systems read (testsuite/testcase, seconds): smoke's checks here, and the
one document writer bench's gates use too (`r4b_deploy/report/ci.py`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic
from r4b_deploy.checks.smoke import SmokeReport

SUITE_NAME = "r4b-deploy smoke"
CLASSNAME_PREFIX = "smoke"
MS_PER_S = 1000.0
# Characters XML 1.0 forbids even escaped; a server's error text may carry them.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_FORBIDDEN.sub("?", text)


@dataclass(frozen=True)
class JUnitCase:
    """One <testcase>: what smoke's checks and bench's gates both become."""

    classname: str
    name: str
    time_s: float
    outcome: Literal["pass", "fail", "skip", "error"]
    message: str
    failure_type: str = "CheckFailed"  # the <failure>/<error> type attribute


def junit_document(
    suite_name: str,
    cases: list[JUnitCase],
    *,
    time_s: float,
    timestamp: datetime,
    properties: list[tuple[str, str]],
) -> str:
    """One <testsuite> in <testsuites>: a failed case is a <failure>, an undecided one an <error>,
    a skipped one <skipped>; a passed case keeps its message as <system-out>."""
    import xml.etree.ElementTree as ET

    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(c.outcome == "fail" for c in cases)),
        "errors": str(sum(c.outcome == "error" for c in cases)),
        "skipped": str(sum(c.outcome == "skip" for c in cases)),
        "time": f"{time_s:.3f}",
    }
    root = ET.Element("testsuites", name=suite_name, **counts)
    suite = ET.SubElement(
        root, "testsuite", name=suite_name, **counts, timestamp=timestamp.replace(microsecond=0).isoformat()
    )
    props = ET.SubElement(suite, "properties")
    for name, value in properties:
        ET.SubElement(props, "property", name=name, value=_xml_safe(value))
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=c.classname, name=_xml_safe(c.name), time=f"{c.time_s:.3f}")
        message = _xml_safe(c.message)
        if c.outcome in ("fail", "error"):
            tag = "failure" if c.outcome == "fail" else "error"
            element = ET.SubElement(case, tag, message=message, type=c.failure_type)
            element.text = message
        elif c.outcome == "skip":
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def junit_xml(report: SmokeReport) -> str:
    """Smoke's checks, one test case each."""
    cases = [
        JUnitCase(
            classname=f"{CLASSNAME_PREFIX}.{check.level}",
            name=check.name,
            time_s=check.time_ms / MS_PER_S,
            outcome="pass" if check.status not in ("fail", "skip") else check.status,  # type: ignore[arg-type]
            message=check.reason,
        )
        for check in report.checks
    ]
    properties = [
        ("url", report.url),
        ("served_model_name", report.served_model_name),
        ("protocol_only", str(report.protocol_only).lower()),
        ("modes", ",".join(report.modes)),
        ("timeout_s", f"{report.timeout_s:g}"),
    ]
    return junit_document(
        SUITE_NAME, cases, time_s=report.duration_ms / MS_PER_S, timestamp=report.started_at, properties=properties
    )


def write_junit(report: SmokeReport, path: Path) -> None:
    write_text_atomic(path, junit_xml(report), mode=REPORT_FILE_MODE)
