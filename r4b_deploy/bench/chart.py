"""The sweep as a picture: latency against throughput, one point per load level.

The knee of these curves is the operating point: where more load buys little throughput and
a lot of latency. matplotlib is a dependency, imported only here and only when a chart is
drawn (it takes ~0.5 s to import), with the Agg backend, so no display is needed.
"""

from __future__ import annotations

import io

from r4b_deploy.bench.report import BenchReport

CHART_SIZE_IN = (11.0, 4.5)
CHART_DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def render_chart_png(report: BenchReport) -> bytes:
    """Two panels against output tokens/s: TTFT (p50, p95) and TPOT (p50, p95)."""
    plt = _pyplot()
    levels = [lv for lv in report.levels if lv.metrics.completed]
    fig, (ax_ttft, ax_tpot) = plt.subplots(1, 2, figsize=CHART_SIZE_IN)
    try:
        x = [lv.metrics.output_throughput for lv in levels]
        by_mode: dict[str, list[int]] = {}  # one curve per --mode: a sweep's modes are not one line
        for i, lv in enumerate(levels):
            by_mode.setdefault(lv.mode, []).append(i)
        panels = ((ax_ttft, "ttft", "TTFT (ms)"), (ax_tpot, "tpot", "TPOT (ms)"))
        for ax, name, ylabel in panels:
            for mode, indices in by_mode.items():
                for stat, style in (("median", "o-"), ("p95", "s--")):
                    points = []
                    for i in indices:
                        dist = getattr(levels[i].metrics, name)
                        yi = dist.median if stat == "median" else dist.percentiles.get("p95")
                        if yi is not None:
                            points.append((x[i], yi))
                    if points:
                        label = f"{mode} {stat}" if len(by_mode) > 1 else stat
                        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
            for lv, xi in zip(levels, x, strict=True):
                yi = getattr(lv.metrics, name).median
                if yi is not None:
                    ax.annotate(lv.label, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.set_xlabel("output throughput (tokens/s)")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        if not levels:
            ax_ttft.text(0.5, 0.5, "no successful request", ha="center", va="center", transform=ax_ttft.transAxes)
        fig.suptitle(f"{report.model_id}: {report.workload}, mode {report.mode}, max_tokens {report.max_tokens}")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=CHART_DPI)
        return buf.getvalue()
    finally:
        plt.close(fig)
