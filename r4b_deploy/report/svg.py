"""Charts for the HTML report as inline SVG text, drawn here in plain Python.

Why not matplotlib's SVG: the page must stay small, readable offline and under a strict
Content-Security-Policy, its numbers must be the JSON's (a point's tooltip is its exact value),
and importing matplotlib costs ~0.5 s. Every string is escaped here, so the template may insert
the result as markup (`render/jinja.py` `trusted_html`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH_PX = 560
HEIGHT_PX = 320
MARGIN_PX = {"left": 64, "right": 32, "top": 28, "bottom": 48}  # right: room for the last tick's label
TICKS = 5
HEADROOM = 1.08  # the largest value sits a little below the top edge
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")
BAR_HEIGHT_PX = 18
BAR_GAP_PX = 8
BAR_LABEL_MAX_PX = WIDTH_PX // 2  # the bar labels' column: as wide as its longest label, up to this
CHAR_PX = 6.5  # about one character of the 11 px sans-serif labels: room to keep for a label
LABEL_LINE_PX = 13  # a label's height: labels closer than this on both axes would overlap


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str = ""  # written beside the point (a load level)


@dataclass(frozen=True)
class Series:
    name: str
    points: list[Point]
    dashed: bool = False


def _nice_step(span: float) -> float:
    """A 1, 2 or 5 times a power of ten step giving about TICKS ticks over `span`."""
    raw = span / TICKS
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _ticks(top: float) -> list[float]:
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    step = _nice_step(top * HEADROOM)
    count = math.ceil(top * HEADROOM / step)
    return [i * step for i in range(count + 1)]


def _tick_text(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == 0 else f"{value:g}"


def _attr(value: str) -> str:
    return escape(value, quote=True)


def line_chart(title: str, x_label: str, y_label: str, series: list[Series]) -> str:
    """Lines with dots, both axes from 0; a point's `<title>` holds its exact figures."""
    points = [p for s in series for p in s.points]
    x_ticks = _ticks(max((p.x for p in points), default=0.0))
    y_ticks = _ticks(max((p.y for p in points), default=0.0))
    left, top = MARGIN_PX["left"], MARGIN_PX["top"]
    plot_w = WIDTH_PX - left - MARGIN_PX["right"]
    plot_h = HEIGHT_PX - top - MARGIN_PX["bottom"]

    def sx(x: float) -> float:
        return left + plot_w * x / x_ticks[-1]

    def sy(y: float) -> float:
        return top + plot_h * (1 - y / y_ticks[-1])

    labels = _Labels()
    out = [_open(title, WIDTH_PX, HEIGHT_PX)]
    for t in y_ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>')
        out.append(_text(left - 6, sy(t) + 4, _tick_text(t), "tick", "end"))
    for t in x_ticks:
        out.append(_text(sx(t), top + plot_h + 16, _tick_text(t), "tick", "middle"))
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>')
    out.append(_text(left + plot_w / 2, HEIGHT_PX - 10, x_label, "label", "middle"))
    out.append(
        f'<text class="label" transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{coords}"/>')
        for p in s.points:
            tip = f"{s.name} {p.label}: {y_label} {p.y:g} at {x_label} {p.x:g}"
            circle = f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="3.5" fill="{colour}">'
            out.append(f"{circle}<title>{escape(tip)}</title></circle>")
            if p.label and not s.dashed:
                out += labels.place(sx(p.x), sy(p.y), p.label, left + plot_w / 2)
        out.append(_legend_entry(i, s.name, colour, left + 8, top + 8, s.dashed))
    out.append("</svg>")
    return "\n".join(out)


def stacked_bars(title: str, x_label: str, rows: list[tuple[str, list[float]]], parts: list[str]) -> str:
    """Horizontal bars, one per row, each split into `parts` (e.g. reasoning then answer tokens)."""
    total = max((sum(values) for _, values in rows), default=0.0)
    x_ticks = _ticks(total)
    longest = max((len(name) for name, _ in rows), default=0)
    left, top = min(BAR_LABEL_MAX_PX, round(longest * CHAR_PX) + 12), MARGIN_PX["top"] + 8
    plot_w = WIDTH_PX - left - MARGIN_PX["right"]
    plot_h = max(len(rows), 1) * (BAR_HEIGHT_PX + BAR_GAP_PX)
    height = top + plot_h + MARGIN_PX["bottom"]

    def sx(x: float) -> float:
        return left + plot_w * x / x_ticks[-1]

    out = [_open(title, WIDTH_PX, height)]
    for t in x_ticks:
        out.append(f'<line class="grid" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + plot_h}"/>')
        out.append(_text(sx(t), top + plot_h + 16, _tick_text(t), "tick", "middle"))
    for r, (name, values) in enumerate(rows):
        y = top + r * (BAR_HEIGHT_PX + BAR_GAP_PX) + BAR_GAP_PX / 2
        out.append(_text(left - 6, y + BAR_HEIGHT_PX - 5, name, "tick", "end"))
        x = 0.0
        for i, value in enumerate(values):
            tip = f"{name}: {parts[i]} {value:g}"
            out.append(
                f'<rect x="{sx(x):.1f}" y="{y:.1f}" width="{sx(x + value) - sx(x):.1f}" height="{BAR_HEIGHT_PX}" '
                f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(tip)}</title></rect>'
            )
            x += value
    out.append(_text(left + plot_w / 2, height - 10, x_label, "label", "middle"))
    for i, part in enumerate(parts):
        out.append(_legend_entry(i, part, PALETTE[i % len(PALETTE)], WIDTH_PX - 150, 6, False, swatch=True))
    out.append("</svg>")
    return "\n".join(out)


class _Labels:
    """Point labels that do not overwrite each other: a label that would overlap one already
    written is left out (the point's tooltip still names it); right of the middle, a label goes
    to the left of its point, so that it stays inside the chart."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float]] = []  # x from, x to, baseline y

    def place(self, x: float, y: float, text: str, middle_x: float) -> list[str]:
        width = len(text) * CHAR_PX
        start = x + 5 if x <= middle_x else x - 5 - width
        box = (start, start + width, y - 6)
        if any(a < box[1] and box[0] < b and abs(base - box[2]) < LABEL_LINE_PX for a, b, base in self.boxes):
            return []
        self.boxes.append(box)
        return [_text(start, box[2], text, "point")]


def _text(x: float, y: float, text: str, css: str, anchor: str = "start") -> str:
    return f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def _open(title: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_attr(title)}"><title>{escape(title)}</title>'
    )


def _legend_entry(i: int, name: str, colour: str, x: int, y: int, dashed: bool, swatch: bool = False) -> str:
    row = y + i * 14
    if swatch:
        mark = f'<rect x="{x}" y="{row}" width="10" height="10" fill="{colour}"/>'
    else:
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        mark = f'<line x1="{x}" x2="{x + 18}" y1="{row + 5}" y2="{row + 5}" stroke="{colour}" stroke-width="2"{dash}/>'
    return f'{mark}<text class="legend" x="{x + 22}" y="{row + 9}">{escape(name)}</text>'
