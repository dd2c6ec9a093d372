"""What makes a run's own figures untrustworthy, said as one warning line each: a client that ran
out of CPU, replies that arrived in one burst, token counts the server's usage left open or
contradicted. Pure: a level's result in, lines out (the runner adds them to the report)."""

from __future__ import annotations

from r4b_deploy.bench.metrics import BURST_GAP_S, MS_PER_S
from r4b_deploy.bench.report import LevelResult

CLIENT_CPU_WARN_FRACTION = 0.8  # of one core: above it the client may have capped the figures
# Share of a mode's replies that arrived in one burst (metrics.burst_reply) from which the run
# says so: at 5 % the p95 figures, what gates usually watch, can be burst replies' alone.
BURST_WARN_RATE = 0.05


def level_warnings(result: LevelResult) -> list[str]:
    """The level's warnings: the load generator first, then the stream timing, then token counts."""
    m = result.metrics
    out: list[str] = []
    if result.client_cpu_fraction > CLIENT_CPU_WARN_FRACTION:
        out.append(
            f"{result.label}: the client used {result.client_cpu_fraction:.0%} of a core; "
            "the load generator may have limited these figures"
        )
    out += burst_warnings(result)
    if m.missing_usage:
        out.append(
            f"{result.label}: {m.missing_usage} replies carried no usage, so their tokens are not counted "
            "(the server ignored stream_options.include_usage)"
        )
    if m.split_adjusted:
        out.append(
            f"{result.label}: {m.split_adjusted} replies' usage (completion_tokens_details.reasoning_tokens) "
            "disagreed with the text received; their tokens were counted from the text"
        )
    unknown = sum(mm.split_unknown for mm in m.modes.values()) - m.missing_usage
    if unknown > 0:
        out.append(f"{result.label}: {unknown} answers could not be counted apart from reasoning (/tokenize failed)")
    return out


def burst_warnings(result: LevelResult) -> list[str]:
    """One line per thinking mode of the level whose replies came in one burst too often."""
    out = []
    for mm in result.metrics.modes.values():
        if mm.burst_rate is None or mm.burst_rate < BURST_WARN_RATE:
            continue
        where = f"{result.label} ({mm.mode} mode)" if len(result.metrics.modes) > 1 else result.label
        out.append(
            f"{where}: {mm.burst_replies} of {mm.completed} replies ({mm.burst_rate:.0%}) arrived in one burst "
            f"(most token gaps under {BURST_GAP_S * MS_PER_S:g} ms, first token at the end): their TTFT is the "
            "whole reply's time and their TPOT and ITL are not the server's; a proxy buffers the stream, or the "
            "server or this client is short of CPU"
        )
    return out
