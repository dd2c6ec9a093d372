"""The plan checked against vLLM: the plan's figures beside the ones vLLM logged at start-up.

Drift is (vLLM - plan) / plan, in percent: positive when vLLM got more than planned. A drift
beyond profiles/memory.yaml's `plan_check` thresholds is a warning naming the term likely wrong,
from what the log shows (`launch/startup_log.py`): KV memory as planned but tokens off -> the KV
bytes per token; KV memory off -> the term whose logged figure is furthest from the plan's
(weights and CUDA graphs at INFO; torch peak, non-torch and CUDA's total at DEBUG only).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from r4b_deploy.planning.text import gib_text

if TYPE_CHECKING:
    from r4b_deploy.launch.startup_log import VllmStartup
    from r4b_deploy.planning.coefficients import PlanCheckThresholds
    from r4b_deploy.planning.plan import Plan

PLAN_CHECK_FILE = "plan-check.md"
DEBUG_HINT = (
    "the torch peak and non-torch memory are logged at DEBUG only: VLLM_LOGGING_LEVEL=DEBUG in the folder's "
    "r4b.env shows them on the next start (vLLM 0.19 then also prints VLLM_API_KEY into its log)"
)
Unit = Literal["bytes", "tokens", "x"]


class FigureCheck(BaseModel):
    """One figure, planned and logged."""

    model_config = ConfigDict(frozen=True)

    name: str  # the MemoryBreakdown field it checks
    label: str
    unit: Unit
    planned: float
    logged: float
    drift_pct: float | None  # None when the plan's figure is 0

    def text(self, value: float) -> str:
        if self.unit == "bytes":
            return gib_text(value)
        return f"{value:,.2f}x" if self.unit == "x" else f"{value:,.0f}"

    @property
    def drift_text(self) -> str:
        return "-" if self.drift_pct is None else f"{self.drift_pct:+.1f}%"


class PlanCheck(BaseModel):
    """The plan beside vLLM's own start-up figures; `checked` False says why in `note`."""

    model_config = ConfigDict(frozen=True)

    checked: bool
    vllm_version: str | None = None
    device: str | None = None  # "GPU" / "CPU", as vLLM names its KV cache
    kv_drift_pct: float = 0.0  # the thresholds used
    weights_drift_pct: float = 0.0
    figures: list[FigureCheck] = []
    warnings: list[str] = []
    note: str = ""

    def figure(self, name: str) -> FigureCheck | None:
        return next((f for f in self.figures if f.name == name), None)

    def summary_lines(self) -> list[str]:
        """For `up`'s summary and `status`: a heading, then one line per figure."""
        if not self.checked:
            return [f"plan vs vLLM: not checked: {self.note}"]
        where = f"vLLM {self.vllm_version or '?'} ({self.device or '?'})"
        lines = [f"plan vs {where}, drift = (vLLM - plan) / plan:"]
        for f in self.figures:
            lines.append(f"  {f.label}: {f.text(f.planned)} planned, {f.text(f.logged)} by vLLM ({f.drift_text})")
        if self.note:
            lines.append(f"  {self.note}")
        return lines

    def markdown(self) -> str:
        lines = ["# The plan against vLLM's start-up log", ""]
        if not self.checked:
            return "\n".join([*lines, f"Not checked: {self.note}", ""])
        lines += [
            f"vLLM {self.vllm_version or '?'} ({self.device or '?'}). Drift = (vLLM - plan) / plan; beyond "
            f"±{self.kv_drift_pct:g}% for the KV cache or ±{self.weights_drift_pct:g}% for the weights "
            "it is a warning.",
            "",
            "| figure | plan | vLLM | drift |",
            "|---|---:|---:|---:|",
            *(f"| {f.label} | {f.text(f.planned)} | {f.text(f.logged)} | {f.drift_text} |" for f in self.figures),
        ]
        if self.note:
            lines += ["", self.note]
        if self.warnings:
            lines += ["", "## Warnings", "", *(f"- {w}" for w in self.warnings)]
        return "\n".join([*lines, ""])


def drift_pct(planned: float, logged: float) -> float | None:
    return None if planned == 0 else round((logged - planned) / planned * 100, 2)


def check_plan(plan: Plan, startup: VllmStartup, thresholds: PlanCheckThresholds | None = None) -> PlanCheck:
    """The plan's memory figures beside vLLM's, with warnings for drifts beyond the thresholds."""
    if thresholds is None:
        from r4b_deploy.planning.coefficients import memory_model

        thresholds = memory_model().plan_check
    base = {
        "vllm_version": startup.vllm_version,
        "device": startup.device,
        "kv_drift_pct": thresholds.kv_drift_pct,
        "weights_drift_pct": thresholds.weights_drift_pct,
    }
    memory = plan.memory
    if not startup.found:
        return PlanCheck(checked=False, **base, note="vLLM's KV cache lines are not in its log (yet)")
    if memory.kv_tokens == 0:
        return PlanCheck(checked=False, **base, note="the plan predicts no KV cache to compare with")
    if startup.max_model_len is not None and startup.max_model_len != plan.vllm.max_model_len:
        note = (
            f"the server runs with max_model_len {startup.max_model_len:,}, the plan's is "
            f"{plan.vllm.max_model_len:,}: it was started for another plan (r4b-deploy down, then up)"
        )
        return PlanCheck(checked=False, **base, warnings=[note], note=note)

    figures = _figures(plan, startup)
    by_name = {f.name: f for f in figures}
    warnings = _kv_warnings(plan, startup, by_name, thresholds)
    weights = by_name.get("weights_bytes")
    if weights is not None and abs(weights.drift_pct or 0) > thresholds.weights_drift_pct and not warnings:
        warnings.append(
            f"vLLM loaded {gib_text(weights.logged)} of weights per GPU, the plan counts {gib_text(weights.planned)} "
            f"({weights.drift_text}): another dtype, quantization or checkpoint than the plan assumed"
        )
    note = "" if startup.has_breakdown or startup.device == "CPU" else f"Not compared: {DEBUG_HINT}."
    return PlanCheck(checked=True, **base, figures=figures, warnings=warnings, note=note)


def _figures(plan: Plan, startup: VllmStartup) -> list[FigureCheck]:
    m = plan.memory
    planned_graphs = m.cuda_graph_bytes + m.cuda_graph_headroom_bytes
    rows: list[tuple[str, str, Unit, float, float | None]] = [
        ("kv_tokens", "KV cache tokens", "tokens", m.kv_tokens, startup.kv_tokens),
        ("kv_cache_bytes", "KV cache memory", "bytes", m.kv_cache_bytes, startup.kv_cache_bytes),
        (
            "max_concurrency",
            f"full {plan.vllm.max_model_len:,}-token requests",
            "x",
            m.max_concurrency,
            startup.max_concurrency,
        ),
        ("weights_bytes", "weights", "bytes", m.weights_bytes, startup.weights_bytes),
        ("cuda_graph_bytes", "CUDA graphs", "bytes", planned_graphs, startup.cuda_graph_bytes),
        (
            "activation_bytes",
            "activation peak",
            "bytes",
            m.activation_bytes + m.vision_encoder_bytes,
            startup.activation_bytes,
        ),
        ("non_torch_bytes", "non-torch memory", "bytes", m.non_torch_bytes, startup.non_torch_bytes),
        ("gpu_memory_bytes", "CUDA-visible total", "bytes", m.gpu_memory_bytes, startup.cuda_total_bytes),
    ]
    return [
        FigureCheck(name=n, label=label, unit=unit, planned=p, logged=v, drift_pct=drift_pct(p, v))
        for n, label, unit, p, v in rows
        if v is not None and (p > 0 or n.startswith("kv"))
    ]


def _kv_warnings(
    plan: Plan, startup: VllmStartup, figures: dict[str, FigureCheck], thresholds: PlanCheckThresholds
) -> list[str]:
    tokens, kv_memory = figures.get("kv_tokens"), figures.get("kv_cache_bytes")

    def beyond(f: FigureCheck | None) -> bool:
        return f is not None and f.drift_pct is not None and abs(f.drift_pct) > thresholds.kv_drift_pct

    if not beyond(tokens) and not beyond(kv_memory):
        return []
    if tokens is None or kv_memory is None:  # one of the two lines fell out of the log's tail
        (only,) = [f for f in (tokens, kv_memory) if f is not None]
        return [f"vLLM's {only.label} is {only.drift_text} off the plan's: {_memory_culprit(plan, startup)}"]
    more = "more" if tokens.logged > tokens.planned else "fewer"
    head = (
        f"vLLM's KV cache holds {abs(tokens.drift_pct or 0):.1f}% {more} tokens than planned "
        f"({tokens.logged:,.0f} against {tokens.planned:,.0f})"
    )
    if not beyond(kv_memory):
        implied = kv_memory.logged / tokens.logged if tokens.logged else 0
        return [
            f"{head} with the KV memory as planned: the KV bytes per token is likely wrong (the plan's "
            f"{plan.memory.kv_bytes_per_token:,} B, vLLM's figures give {implied:,.0f} B: layers, KV heads, "
            "head_dim or --kv-cache-dtype)"
        ]
    return [f"{head}; its memory is {kv_memory.drift_text} off the plan's: {_memory_culprit(plan, startup)}"]


def _memory_culprit(plan: Plan, startup: VllmStartup) -> str:
    """Which term most likely moved the KV memory: the one whose logged figure is furthest off.

    KV memory = budget - weights - peak - non-torch [- graphs]: each gap below is how much more
    than planned a term took (so how much less it left for the KV cache); what the logged terms
    do not explain is the rest's (at INFO: peak, non-torch and CUDA's total, which only DEBUG shows).
    """
    m = plan.memory
    if startup.device == "CPU":
        return "the CPU KV space (VLLM_CPU_KVCACHE_SPACE) is not the plan's"
    gaps: dict[str, int] = {}
    if startup.weights_bytes is not None:
        gaps["the weights (dtype, quantization or checkpoint)"] = startup.weights_bytes - m.weights_bytes
    if startup.cuda_graph_estimate_bytes is not None and m.cuda_graph_bytes:
        gaps["the CUDA graphs vLLM profiled"] = startup.cuda_graph_estimate_bytes - m.cuda_graph_bytes
    if startup.has_breakdown:
        gaps["the activation peak"] = (startup.activation_bytes or 0) - m.activation_bytes - m.vision_encoder_bytes
        if startup.non_torch_bytes is not None:
            gaps["the non-torch memory"] = startup.non_torch_bytes - m.non_torch_bytes
        if startup.cuda_total_bytes is not None:
            utilization = plan.vllm.gpu_memory_utilization
            gaps["the GPU's CUDA-visible total"] = round((m.gpu_memory_bytes - startup.cuda_total_bytes) * utilization)
        rest = "the budget (another --gpu-memory-utilization, or memory others held at start)"
    else:
        rest = "the activation peak, non-torch memory or CUDA-visible total (not logged at INFO)"
    kv_gap = m.kv_cache_bytes - (startup.kv_cache_bytes or 0)
    gaps[rest] = kv_gap - sum(gaps.values())
    term, gap = max(gaps.items(), key=lambda item: abs(item[1]))
    hint = "" if startup.has_breakdown else f"; {DEBUG_HINT}"
    return f"likely {term}, {gib_text(abs(gap))} away from the plan's{hint}"


def check_log(plan: Plan, log_text: str) -> PlanCheck:
    """The plan against a server log's text (the last start in it)."""
    from r4b_deploy.launch.startup_log import parse_startup

    return check_plan(plan, parse_startup(log_text))


def write_plan_check(check: PlanCheck, report_dir: Path) -> str:
    """plan-check.md in the report folder; returns its name."""
    from r4b_deploy.atomic import REPORT_FILE_MODE, write_text_atomic

    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / PLAN_CHECK_FILE, check.markdown(), mode=REPORT_FILE_MODE)
    return PLAN_CHECK_FILE
