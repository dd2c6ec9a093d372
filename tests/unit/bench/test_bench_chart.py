"""The chart is a real PNG of the size asked for."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from r4b_deploy.bench.chart import CHART_DPI, CHART_SIZE_IN, render_chart_png
from r4b_deploy.bench.writers import write_outputs


def test_chart_is_a_valid_png(make_report, tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    write_outputs(make_report(), chart_path=path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (round(CHART_SIZE_IN[0] * CHART_DPI), round(CHART_SIZE_IN[1] * CHART_DPI))


def test_chart_of_a_run_where_everything_failed(make_report) -> None:
    report = make_report()
    from r4b_deploy.bench.metrics import compute_metrics
    from r4b_deploy.client.records import RequestRecord

    failed = compute_metrics([RequestRecord(success=False, error_kind="timeout")], 1.0)
    levels = [lv.model_copy(update={"metrics": failed}) for lv in report.levels]
    png = render_chart_png(report.model_copy(update={"levels": levels}))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
