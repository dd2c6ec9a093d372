"""The HTML report in a real browser (Debian's Chromium, headless): it loads without a console
message (no script error, nothing the page's Content-Security-Policy had to block), and every
figure in the DOM Chromium built is the one bench.json holds, both the exact value and the text
people read."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_samples import sample_plan, sample_smoke, sample_verdicts
from support import require

from r4b_deploy.bench.writers import write_outputs
from r4b_deploy.report.page import flatten, write_report_html

BROWSER_TIMEOUT_S = 90
WINDOW = (1280, 2000)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    require(chromium is not None, "Debian's chromium is not installed (apt-get install -y chromium)")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _console(stderr: str) -> list[str]:
    """Chromium logs each console message (errors, CSP refusals, uncaught exceptions) as a CONSOLE line."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class _Figures(HTMLParser):
    """Each figure cell: data-key -> (data-value, the text shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, list[tuple[str, str]]] = {}  # a figure may be shown twice (headline, table)
        self._open: tuple[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-key") and a.get("data-value") is not None:
            self._open, self._text = (a["data-key"], a["data-value"]), []  # type: ignore[assignment]

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._open:
            self.cells.setdefault(self._open[0], []).append((self._open[1], "".join(self._text).strip()))
            self._open = None


def _shown_matches(text: str, value: float) -> bool:
    """The text is the value rounded to the digits it shows (1,234.5; 0.07692; 12)."""
    shown = float(text.replace(",", ""))
    digits = text.split(".")[1] if "." in text else ""
    if "e" in text.lower():
        return math.isclose(shown, value, rel_tol=1e-3)
    return abs(shown - value) <= 0.5 * 10 ** -len(digits) + 1e-9 or math.isclose(shown, value, rel_tol=5e-4)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("report")
    bench = sample_verdicts()  # gates that pass, fail and stay inconclusive, with intervals
    write_outputs(bench, json_path=folder / "bench.json")
    page = write_report_html(
        folder / "report.html",
        plan=sample_plan(),
        smoke=sample_smoke(),
        bench=bench,
        up={"url": "http://127.0.0.1:8000"},
    )
    return page, folder / "bench.json"


def test_the_console_check_sees_errors_and_blocked_requests(tmp_path: Path) -> None:
    # The detector first: a page that throws and one whose CSP blocks a fetch must both be caught.
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'\">"
        "<img src='https://example.invalid/x.png'><p>x</p>"
    )
    assert any("Content Security Policy" in line for line in _console(_chromium(tmp_path, bad, "--dump-dom").stderr))
    thrower = tmp_path / "throws.html"
    thrower.write_text("<!DOCTYPE html><script>throw new Error('boom-r4b')</script>")
    assert any("boom-r4b" in line for line in _console(_chromium(tmp_path, thrower, "--dump-dom").stderr))


def test_the_report_loads_without_console_messages(tmp_path: Path, written: tuple[Path, Path]) -> None:
    done = _chromium(tmp_path, written[0], "--dump-dom")
    assert _console(done.stderr) == []
    assert "<svg" in done.stdout and 'id="gates"' in done.stdout


def test_every_figure_in_the_dom_is_the_jsons(tmp_path: Path, written: tuple[Path, Path]) -> None:
    dom = _chromium(tmp_path, written[0], "--dump-dom").stdout
    parser = _Figures()
    parser.feed(dom)
    data = json.loads(written[1].read_text())
    compared = 0
    for i, level in enumerate(data["levels"]):
        for key, value in flatten(level).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                for exact, shown in parser.cells[f"levels.{i}.{key}"]:
                    assert json.loads(exact) == value, key
                    assert _shown_matches(shown, value), (key, shown, value)
                    compared += 1
    for i, gate in enumerate(data["slo"]):
        for key in ("threshold", "value", "ci_low", "ci_high"):
            if gate[key] is not None:
                assert [json.loads(exact) for exact, _ in parser.cells[f"slo.{i}.{key}"]] == [gate[key]]
    assert compared > 100


def test_each_gate_verdict_is_in_the_dom(tmp_path: Path, written: tuple[Path, Path]) -> None:
    dom = _chromium(tmp_path, written[0], "--dump-dom").stdout
    verdicts = [gate["verdict"] for gate in json.loads(written[1].read_text())["slo"]]
    assert {"pass", "fail", "inconclusive"} <= set(verdicts)
    for verdict in set(verdicts):
        assert dom.count(f'<td class="{verdict}" data-key="slo.') == verdicts.count(verdict), verdict
    assert "would likely decide it" in dom  # an inconclusive gate says how many runs would decide it


def test_a_screenshot_is_drawn(tmp_path: Path, written: tuple[Path, Path]) -> None:
    shot = tmp_path / "report.png"
    _chromium(tmp_path, written[0], f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000  # a blank page is a few kB
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == WINDOW
