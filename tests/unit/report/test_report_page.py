"""The HTML report: every string escaped, nothing fetched, every figure the JSON's, new metrics shown."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from report_samples import HOSTILE, sample_bench, sample_plan, sample_smoke
from support import file_mode, umask

from r4b_deploy.bench.writers import result_json
from r4b_deploy.report.page import bench_sections, flatten, render_report_html, write_report_html


class Cells(HTMLParser):
    """data-key -> data-value of every figure on the page, and the tags used."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.tags: set[str] = set()
        self.loading: list[str] = []  # attributes that would make a browser fetch something

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        self.loading += [f"{tag} {k}={v}" for k, v in attrs if k in ("src", "href", "xlink:href", "srcset", "data")]
        if a.get("data-key") and a.get("data-value") is not None:
            self.values[a["data-key"]] = a["data-value"]


def _page() -> str:
    return render_report_html(plan=sample_plan(), smoke=sample_smoke(), bench=sample_bench(), up={"url": HOSTILE})


def test_every_string_from_outside_is_escaped() -> None:
    page = _page()
    assert HOSTILE not in page
    assert "<script" not in page and "<img" not in page and "onerror=" not in page.replace("onerror=alert", "")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page or "&lt;script&gt;alert(&quot;x&quot;)" in page


def test_the_page_fetches_nothing_and_runs_nothing() -> None:
    page = _page()
    parser = Cells()
    parser.feed(page)
    assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed"}, parser.tags
    assert "default-src 'none'" in page  # the page's own CSP forbids any request and any script
    assert parser.loading == []
    assert "url(" not in page


def test_every_bench_figure_on_the_page_is_the_jsons() -> None:
    bench = sample_bench()
    parser = Cells()
    parser.feed(render_report_html(bench=bench))
    data = result_json(bench)
    checked = 0
    for i, level in enumerate(data["levels"]):
        for key, value in flatten(level).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert json.loads(parser.values[f"levels.{i}.{key}"]) == value, key
                checked += 1
    for i, gate in enumerate(data["slo"]):
        assert json.loads(parser.values[f"slo.{i}.threshold"]) == gate["threshold"]
    assert checked > 100  # every level's latencies, throughputs and per-mode figures


def test_a_metric_a_later_version_adds_shows_up_without_a_change_here() -> None:
    level = {"label": "c1", "p95_time_to_think_ms": 12.5, "modes": {"auto": {"cut_off_thinking_rate": 0.25}}}
    (run,) = bench_sections({"levels": [level]})
    keys = {cell.key for table in run.tables for row in table.rows for cell in row}
    assert {"levels.0.p95_time_to_think_ms", "levels.0.modes.auto.cut_off_thinking_rate"} <= keys


def test_charts_are_inline_svg_with_the_levels() -> None:
    page = render_report_html(bench=sample_bench())
    assert page.count("<svg") == 4  # TTFT, first answer, TPOT against throughput; tokens per mode
    assert all(f">{label}</text>" in page for label in ("c1", "c4", "c16"))


def test_written_atomically_readable_by_everyone(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    with umask(0o077):
        write_report_html(target, bench=sample_bench())
    assert file_mode(target) == 0o644
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary left behind


def test_the_dockerfile_templates_are_still_not_escaped() -> None:
    from r4b_deploy.render.jinja import environment

    env = environment()
    assert env.autoescape("report/report.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("Dockerfile.j2") is False  # type: ignore[operator]


def test_warnings_come_before_the_figures_they_cast_doubt_on() -> None:
    page = render_report_html(bench=sample_bench())
    bench = page[page.index('<section id="bench">') :]
    assert '<ul class="warnings">' in bench
    assert bench.index('<ul class="warnings">') < bench.index("<svg") < bench.index("<table")


def test_point_labels_never_overwrite_each_other_and_stay_in_the_chart() -> None:
    from r4b_deploy.report import svg

    same_spot = [svg.Series(m, [svg.Point(10.0, 5.0, f"{m}, concurrency 1")]) for m in ("auto", "short")]
    chart = svg.line_chart("t", "x", "y", same_spot)
    assert chart.count('class="point"') == 1  # the second is in its point's tooltip only
    assert "<title>short short, concurrency 1: y 5 at x 10</title>" in chart
    # At the right edge, a label is written to the left of its point.
    edge = svg.line_chart("t", "x", "y", [svg.Series("p50", [svg.Point(1.0, 1.0, "a long level label")])])
    x = float(edge.split('class="point" x="')[1].split('"')[0])
    assert x + len("a long level label") * svg.CHAR_PX <= svg.WIDTH_PX


def test_bar_labels_get_the_room_they_need() -> None:
    from r4b_deploy.report import svg

    name = "hard, short, rate 0.5/s, max 16 · short"  # wider than the column used to be
    chart = svg.stacked_bars("t", "tokens", [(name, [3.0, 4.0])], ["reasoning", "answer"])
    label_x = float(chart.split('text-anchor="end">' + name)[0].rsplit('x="', 1)[1].split('"')[0])
    assert label_x - len(name) * svg.CHAR_PX >= 0
