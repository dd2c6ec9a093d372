"""Write a smoke report as JSON: the machine-readable twin of the table the CLI prints."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from r4b_deploy.checks.smoke import SmokeReport


def report_json(report: SmokeReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(report: SmokeReport, path: Path) -> None:
    write_text_atomic(path, report_json(report))
