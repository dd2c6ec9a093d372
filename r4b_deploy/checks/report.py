"""Write a smoke report as JSON: the machine-readable twin of the table the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path

from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic
from r4b_deploy.checks.smoke import SmokeReport


def report_json(report: SmokeReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2) + "\n"


def write_json(report: SmokeReport, path: Path) -> None:
    write_text_atomic(path, report_json(report), mode=REPORT_FILE_MODE)
