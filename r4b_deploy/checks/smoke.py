"""Smoke checks of a running R-4B endpoint: `run_smoke(SmokeConfig) -> SmokeReport`.

Two levels. Protocol checks hold for any model behind the endpoint, random weights included:
the routes answer, usage is reported, images reach the model (their prompt-token cost is
measured), each `thinking_mode` reaches the chat template (prompt tokens differ), short mode
yields no reasoning, long mode yields reasoning (closed, or truncated by the token limit —
either proves the mechanism), and no answer carries a stray `</think>`. Model-behaviour checks
need real weights: a solid red image is called red, the large image costs more prompt tokens
than the small one (R-4B's anyres tiling), short mode is really short, long mode closes its
reasoning and then answers. `protocol_only` turns those off for test models.

Library code: never prints; reports each finished check to `on_check` for live displays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, computed_field

from r4b_deploy.client.http import DEFAULT_TIMEOUT_S, ChatResult, ClientError, EndpointClient
from r4b_deploy.client.images import (
    KNOWN_COLOUR_NAME,
    LARGE_IMAGE_SIZE_PX,
    SMALL_IMAGE_SIZE_PX,
    known_colour_image_url,
    large_image_url,
    small_image_url,
)
from r4b_deploy.client.reasoning import ReasoningSplit
from r4b_deploy.client.urls import check_endpoint_url, redact_url
from r4b_deploy.client.wire import REQUEST_TIMEOUT_MAX_S
from r4b_deploy.errors import EnvironmentProblem, UsageError
from r4b_deploy.spec import model_spec

CheckLevel = Literal["protocol", "model"]
CheckStatus = Literal["pass", "fail", "skip"]

TEXT_PROMPT = "Say hello in one short sentence."
MODE_PROMPT = "What is 7 + 5? Answer with the number only."
IMAGE_PROMPT = "What colour is this image? Answer with one word."
PROTOCOL_MAX_TOKENS = 32  # enough to see tokens flow; random weights never stop on their own
BEHAVIOUR_MAX_TOKENS = 1024  # room for a real model's long-mode reasoning to close on a simple sum
SHORT_ANSWER_MAX_TOKENS = 64  # short mode on a one-number question must stay under this
BASELINE_MAX_TOKENS = 1  # requests made only for their prompt-token count
MODES_CHECKED_SHORT = frozenset({"short"})  # modes whose answer must stop within short_answer_max_tokens
MAX_CONSECUTIVE_TIMEOUTS = 2  # then the server is taken as stuck and the rest is skipped
SECRET_MASK = "***"


class SmokeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    api_key: SecretStr | None = None
    served_model_name: str = Field(default_factory=lambda: model_spec().served_model_name)
    modes: list[str] | None = None  # None: every thinking mode the model spec lists; []: a model without them
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=REQUEST_TIMEOUT_MAX_S)
    protocol_only: bool = False
    max_tokens: int = Field(default=PROTOCOL_MAX_TOKENS, gt=0)
    behaviour_max_tokens: int = Field(default=BEHAVIOUR_MAX_TOKENS, gt=0)
    short_answer_max_tokens: int = Field(default=SHORT_ANSWER_MAX_TOKENS, gt=0)

    def max_requests(self) -> int:
        """The most requests a run sends: health, models, text, text_stream; two per image check
        (a text baseline, again after a failed one); one per mode; two per prompt count in
        modes_reach_template (/tokenize, then chat when it is missing); image_answer."""
        modes = len(self.modes) if self.modes is not None else len(model_spec().thinking.modes)
        behaviour = 0 if self.protocol_only else 1
        return 4 + 2 * 2 + modes + 2 * (modes + 1) + behaviour

    def time_bound_s(self) -> float:
        """How long a run can take whatever the server does: every request has `timeout_s` in all."""
        return self.max_requests() * self.timeout_s


class CheckResult(BaseModel):
    name: str
    level: CheckLevel
    status: CheckStatus
    reason: str
    time_ms: float
    figures: dict[str, Any] = Field(default_factory=dict)


class SmokeReport(BaseModel):
    url: str  # credentials in the URL, if any, are removed
    served_model_name: str
    protocol_only: bool
    modes: list[str]
    timeout_s: float
    started_at: datetime
    duration_ms: float
    served_models: list[str] = Field(default_factory=list)
    image_prompt_tokens: dict[str, int] = Field(default_factory=dict)  # image name -> its cost in prompt tokens
    mode_prompt_tokens: dict[str, int] = Field(default_factory=dict)  # "none" and each mode -> prompt tokens
    auto_thought: bool | None = None  # which way the model went in auto mode
    checks: list[CheckResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> int:
        return sum(c.status == "pass" for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        return sum(c.status == "fail" for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def skipped(self) -> int:
        return sum(c.status == "skip" for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.failed == 0

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "fail"]


class _Outcome(Exception):
    """Raised inside a check body to end it with a status and a reason."""

    def __init__(self, status: CheckStatus, reason: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.status: CheckStatus = status
        self.reason = reason
        self.figures = figures or {}


def _text(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def _image_message(url: str, prompt: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}],
        }
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _reply_figures(r: ChatResult) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "reasoning_tokens": r.reasoning_tokens,  # as bench counts them (None: usage did not split them)
        "answer_tokens": r.answer_tokens,
        "finish_reason": r.finish_reason,
        "latency_ms": _ms(r.timings.latency_s),
        "thought": r.split.thought,
        "truncated_reasoning": r.split.truncated_reasoning,
        "reasoning_chars": len(r.split.reasoning),
        "answer_chars": len(r.split.answer),
    }
    if r.streamed:
        figures["chunks"] = r.chunks
        figures["ttft_ms"] = _ms(r.timings.ttft_s)
        figures["first_answer_token_ms"] = _ms(r.timings.first_answer_token_s)
    if r.reasoning_field:
        figures["reasoning_field"] = r.reasoning_field
    return figures


def _require_usage(r: ChatResult) -> None:
    if r.prompt_tokens is None or r.completion_tokens is None:
        raise _Outcome("fail", "the reply has no usage (prompt_tokens, completion_tokens)", _reply_figures(r))
    if r.prompt_tokens <= 0:
        raise _Outcome("fail", f"usage.prompt_tokens is {r.prompt_tokens}", _reply_figures(r))


class _Runner:
    def __init__(self, config: SmokeConfig, on_check: Callable[[CheckResult], None] | None) -> None:
        spec = model_spec()
        self.config = config
        self.thinking = spec.thinking
        self.modes = list(config.modes) if config.modes is not None else list(spec.thinking.modes)
        self._spec_modes = list(spec.thinking.modes)
        unknown = [m for m in self.modes if m not in spec.thinking.modes]
        if unknown:
            raise UsageError(
                f"unknown thinking mode {unknown[0]!r}", fix=f"pick one of: {', '.join(spec.thinking.modes)}"
            )
        check_endpoint_url(config.url, "url")
        self.on_check = on_check
        self._secret = config.api_key.get_secret_value() if config.api_key else None
        self.client = EndpointClient(
            config.url, api_key=self._secret, timeout_s=config.timeout_s, served_model_name=config.served_model_name
        )
        self.checks: list[CheckResult] = []
        self.dead_reason: str | None = None
        self._timeouts_in_a_row = 0
        self.replies: dict[str, ReasoningSplit] = {}
        self.mode_results: dict[str, ChatResult] = {}
        self.mode_errors: dict[str, str] = {}
        self.served_models: list[str] = []
        self.image_tokens: dict[str, int] = {}
        self.mode_tokens: dict[str, int] = {}
        self._image_baseline: int | None = None
        self._text_prompt_tokens: int | None = None

    # -- bookkeeping ------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, SECRET_MASK) if self._secret else text

    def _record(self, result: CheckResult) -> CheckResult:
        result = result.model_copy(update={"reason": self._scrub(result.reason)})
        self.checks.append(result)
        if self.on_check is not None:
            self.on_check(result)
        return result

    def _skip(self, name: str, level: CheckLevel, reason: str) -> CheckResult:
        return self._record(CheckResult(name=name, level=level, status="skip", reason=reason, time_ms=0.0))

    def check(self, name: str, level: CheckLevel, body: Callable[[], tuple[str, dict[str, Any]]]) -> CheckResult:
        """Run one check body, timed; `body` returns (reason, figures) on a pass or raises."""
        if self.dead_reason is not None:
            return self._skip(name, level, self.dead_reason)
        t0 = time.perf_counter()
        try:
            reason, figures = body()
            status: CheckStatus = "pass"
            self._timeouts_in_a_row = 0
        except _Outcome as out:
            status, reason, figures = out.status, out.reason, out.figures
        except ClientError as exc:
            status, reason, figures = "fail", exc.message, {"error_kind": exc.kind}
            self._note_timeout(exc)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        return self._record(
            CheckResult(
                name=name, level=level, status=status, reason=reason, time_ms=round(elapsed_ms, 2), figures=figures
            )
        )

    def _note_timeout(self, exc: ClientError) -> None:
        if exc.kind != "timeout":
            self._timeouts_in_a_row = 0
            return
        self._timeouts_in_a_row += 1
        if self._timeouts_in_a_row >= MAX_CONSECUTIVE_TIMEOUTS:
            self.dead_reason = (
                f"the server stopped answering ({self._timeouts_in_a_row} requests in a row timed out"
                f" after {self.config.timeout_s:g} s)"
            )

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> SmokeReport:
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            self.check("health", "protocol", self._health)
            self.check("models", "protocol", self._models)
            self.check("text", "protocol", self._text_plain)
            self.check("text_stream", "protocol", self._text_stream)
            self.check("image_small", "protocol", lambda: self._image("small", small_image_url(), SMALL_IMAGE_SIZE_PX))
            self.check("image_large", "protocol", lambda: self._image("large", large_image_url(), LARGE_IMAGE_SIZE_PX))
            if self.modes:
                for mode in self.modes:
                    self.check(f"mode_{mode}", "protocol", lambda m=mode: self._mode(m))
                self.check("modes_reach_template", "protocol", self._modes_reach_template)
            else:
                self._skip_mode_checks()
            self.check("no_stray_think_tag", "protocol", self._no_stray)
            self._behaviour_checks()
        finally:
            self.client.close()
        return SmokeReport(
            url=redact_url(self.client.base_url),
            served_model_name=self.config.served_model_name,
            protocol_only=self.config.protocol_only,
            modes=self.modes,
            timeout_s=self.config.timeout_s,
            started_at=started,
            duration_ms=round((time.perf_counter() - t0) * 1000, 2),
            served_models=self.served_models,
            image_prompt_tokens=self.image_tokens,
            mode_prompt_tokens=self.mode_tokens,
            auto_thought=self.mode_results["auto"].split.thought if "auto" in self.mode_results else None,
            checks=self.checks,
        )

    def _skip_mode_checks(self) -> None:
        """A model without thinking modes (e.g. Qwen3-VL-4B-Thinking) is never sent one: its mode
        checks are skipped by name, so the report still says what was not checked, and why."""
        for mode in self._spec_modes:
            self._skip(f"mode_{mode}", "protocol", self._no_modes_reason())
        self._skip("modes_reach_template", "protocol", self._no_modes_reason())

    def _no_modes_reason(self) -> str:
        return f"the model has no thinking modes: no {self.thinking.kwarg} is sent"

    def _behaviour_checks(self) -> None:
        names = ["image_answer", "image_tiles"] + [
            f"{m}_{suffix}" for m, suffix in _BEHAVIOUR_NAMES.items() if m in self.modes
        ]
        if self.config.protocol_only:
            for name in names:
                self._skip(name, "model", "--protocol-only: model-behaviour checks are off")
        else:
            self.check("image_answer", "model", self._image_answer)
            self.check("image_tiles", "model", self._image_tiles)
            for mode, suffix in _BEHAVIOUR_NAMES.items():
                if mode in self.modes:
                    self.check(f"{mode}_{suffix}", "model", lambda m=mode: self._mode_behaviour(m))
        if not self.modes:
            for mode, suffix in _BEHAVIOUR_NAMES.items():
                self._skip(f"{mode}_{suffix}", "model", self._no_modes_reason())

    # -- protocol checks --------------------------------------------------------------------

    def _health(self) -> tuple[str, dict[str, Any]]:
        try:
            status = self.client.health_status()
        except ClientError as exc:
            if exc.kind == "connection":
                url = redact_url(self.client.base_url)
                message = (
                    exc.message
                    if exc.message.startswith("nothing answers")
                    else f"nothing answers at {url}: {exc.message}"
                )
                raise EnvironmentProblem(
                    message,
                    fix="check the URL; `r4b-deploy status` shows the deployment, `r4b-deploy up` starts it",
                ) from None
            self.dead_reason = f"the server did not answer /health ({exc.message})"
            raise
        if status != 200:
            raise _Outcome("fail", f"/health answered {status} (200 means ready)", {"status_code": status})
        return "/health answered 200", {"status_code": status}

    def _models(self) -> tuple[str, dict[str, Any]]:
        names = self.client.models()
        self.served_models = names
        name = self.config.served_model_name
        if name not in names:
            listed = ", ".join(repr(n) for n in names) or "nothing"
            raise _Outcome(
                "fail",
                f"model {name!r} is not served; /v1/models lists {listed} (pass --model NAME)",
                {"models": names},
            )
        return f"/v1/models lists {name!r}", {"models": names}

    def _text_plain(self) -> tuple[str, dict[str, Any]]:
        r = self.client.chat(_text(TEXT_PROMPT), max_tokens=self.config.max_tokens)
        self.replies["text"] = r.split
        self._text_prompt_tokens = r.prompt_tokens
        _require_usage(r)
        if not r.completion_tokens:
            raise _Outcome("fail", "the reply generated no tokens (usage.completion_tokens is 0)", _reply_figures(r))
        return f"{r.completion_tokens} tokens, finish_reason {r.finish_reason}", _reply_figures(r)

    def _text_stream(self) -> tuple[str, dict[str, Any]]:
        r = self.client.chat_stream(_text(TEXT_PROMPT), max_tokens=self.config.max_tokens)
        self.replies["text_stream"] = r.split
        figures = _reply_figures(r)
        if r.prompt_tokens is None or r.completion_tokens is None:
            raise _Outcome("fail", "no usage in the final chunk (stream_options.include_usage ignored?)", figures)
        if r.chunks == 0 and r.completion_tokens > 1:
            raise _Outcome("fail", f"usage says {r.completion_tokens} tokens but no text was streamed", figures)
        plain = self._text_prompt_tokens
        if plain is not None and plain != r.prompt_tokens:
            raise _Outcome("fail", f"same prompt, {plain} prompt tokens plain but {r.prompt_tokens} streamed", figures)
        return f"{r.chunks} chunks, TTFT {figures['ttft_ms']} ms, usage in the final chunk", figures

    def _image(self, label: str, url: str, size_px: tuple[int, int]) -> tuple[str, dict[str, Any]]:
        if self._image_baseline is None:
            base = self.client.chat(_text(IMAGE_PROMPT), max_tokens=BASELINE_MAX_TOKENS)
            if base.prompt_tokens is None:
                raise _Outcome("fail", "the text-only baseline reply has no usage.prompt_tokens")
            self._image_baseline = base.prompt_tokens
        r = self.client.chat(_image_message(url, IMAGE_PROMPT), max_tokens=self.config.max_tokens)
        self.replies[f"image_{label}"] = r.split
        _require_usage(r)
        assert r.prompt_tokens is not None  # _require_usage checked it
        cost = r.prompt_tokens - self._image_baseline
        figures = {
            **_reply_figures(r),
            "image_px": f"{size_px[0]}x{size_px[1]}",
            "image_url_bytes": len(url),
            "image_tokens": cost,
        }
        if cost <= 0:
            raise _Outcome("fail", f"the image added {cost} prompt tokens: it did not reach the model's input", figures)
        self.image_tokens[label] = cost
        return f"{size_px[0]}x{size_px[1]} image costs {cost} prompt tokens", figures

    def _mode(self, mode: str) -> tuple[str, dict[str, Any]]:
        max_tokens = self._mode_max_tokens(mode)
        try:
            r = self.client.chat_stream(_text(MODE_PROMPT), mode=mode, max_tokens=max_tokens)
        except ClientError as exc:
            self.mode_errors[mode] = exc.message
            raise
        self.mode_results[mode] = r
        self.replies[f"mode_{mode}"] = r.split
        figures = _reply_figures(r)
        _require_usage(r)
        s = r.split
        if mode == "short":
            if s.thought:
                raise _Outcome(
                    "fail",
                    f"short mode returned {len(s.reasoning)} chars of reasoning"
                    f" (in {r.reasoning_field or 'the content'}); the reasoning parser must see enable_thinking=false",
                    figures,
                )
            return "no reasoning; the reply is all answer", figures
        if mode == "long":
            if not s.thought:
                raise _Outcome("fail", "long mode returned no reasoning", figures)
            if s.truncated_reasoning:
                return f"reasoning still open at the {max_tokens}-token limit (truncated, not an answer)", figures
            return "reasoning closed, then an answer", figures
        return ("the model thought first" if s.thought else "the model answered without thinking"), figures

    def _mode_max_tokens(self, mode: str) -> int:
        """Protocol level: a few tokens prove the mechanism. Model level: room for long reasoning to
        close; short mode gets only its limit, since stopping within it is what is checked."""
        if self.config.protocol_only:
            return self.config.max_tokens
        if mode in MODES_CHECKED_SHORT:
            return self.config.short_answer_max_tokens
        return self.config.behaviour_max_tokens

    def _modes_reach_template(self) -> tuple[str, dict[str, Any]]:
        counts: dict[str, int] = {}
        sources: dict[str, str] = {}
        for mode in [None, *self.modes]:
            key = mode or "none"
            result = self.mode_results.get(mode) if mode else None
            if result is not None and result.prompt_tokens is not None:
                counts[key], sources[key] = result.prompt_tokens, "usage"
                continue
            try:
                counts[key], sources[key] = self.client.tokenize(messages=_text(MODE_PROMPT), mode=mode), "tokenize"
            except ClientError as exc:
                if exc.kind != "http_404":
                    raise
                base = self.client.chat(_text(MODE_PROMPT), mode=mode, max_tokens=BASELINE_MAX_TOKENS)
                if base.prompt_tokens is None:
                    raise _Outcome("fail", f"no prompt-token count for mode {key} (no usage, no /tokenize)") from None
                counts[key], sources[key] = base.prompt_tokens, "usage"
        self.mode_tokens = counts
        figures: dict[str, Any] = {"prompt_tokens": counts, "source": sources}
        default = self.thinking.default_mode
        same_as_none = [m for m in self.modes if m != default and counts[m] == counts["none"]]
        if same_as_none:
            raise _Outcome(
                "fail",
                f"{self.thinking.kwarg}={'/'.join(same_as_none)} gives the same prompt as no kwarg ({counts['none']}"
                f" tokens): the chat template ignores {self.thinking.request_field}",
                figures,
            )
        by_count: dict[int, list[str]] = {}
        for m in self.modes:
            by_count.setdefault(counts[m], []).append(m)
        clashes = [ms for ms in by_count.values() if len(ms) > 1]
        if clashes:
            raise _Outcome(
                "fail",
                f"modes {' and '.join(clashes[0])} give the same prompt: the template does not tell them apart",
                figures,
            )
        listing = ", ".join(f"{k} {v}" for k, v in counts.items())
        return f"prompt tokens differ by mode: {listing}", figures

    def _no_stray(self) -> tuple[str, dict[str, Any]]:
        if not self.replies:
            raise _Outcome("skip", "no replies to inspect")
        close = self.thinking.close_tag
        bad = [name for name, s in self.replies.items() if s.stray_close_tag or close in s.answer]
        figures = {"replies": len(self.replies), "with_stray_tag": bad}
        if bad:
            raise _Outcome("fail", f"stray {close} in the content of: {', '.join(bad)}", figures)
        return f"none in {len(self.replies)} replies", figures

    # -- model-behaviour checks -------------------------------------------------------------

    def _image_answer(self) -> tuple[str, dict[str, Any]]:
        mode = "short" if "short" in self.modes else (self.modes[0] if self.modes else None)
        max_tokens = self.config.short_answer_max_tokens if mode == "short" else self.config.behaviour_max_tokens
        r = self.client.chat(_image_message(known_colour_image_url(), IMAGE_PROMPT), mode=mode, max_tokens=max_tokens)
        figures = {**_reply_figures(r), "answer": r.split.answer[:80]}
        if KNOWN_COLOUR_NAME not in r.split.answer.lower():
            raise _Outcome(
                "fail", f"a solid {KNOWN_COLOUR_NAME} image; the answer was {r.split.answer[:60]!r}", figures
            )
        return f"named the colour: {r.split.answer[:60]!r}", figures

    def _image_tiles(self) -> tuple[str, dict[str, Any]]:
        """Anyres tiling cuts a larger image into more tiles. Model level: a processor whose tile grid
        the small image already fills (the rehearsal's tiny model) costs the same for both."""
        small, large = self.image_tokens.get("small"), self.image_tokens.get("large")
        if small is None or large is None:
            raise _Outcome("skip", "needs the prompt-token cost of both image checks")
        figures = {"small_image_tokens": small, "large_image_tokens": large}
        small_px, large_px = ("x".join(map(str, size)) for size in (SMALL_IMAGE_SIZE_PX, LARGE_IMAGE_SIZE_PX))
        if large <= small:
            raise _Outcome(
                "fail",
                f"the {large_px} image costs {large} prompt tokens, no more than the {small_px} one's {small}: the "
                f"image processor gave it no more tiles (a tile grid the {small_px} image already fills, as the "
                "rehearsal's tiny model's, cannot show tiling)",
                figures,
            )
        return f"the {large_px} image costs {large} prompt tokens, the {small_px} one {small}: tiled", figures

    def _mode_behaviour(self, mode: str) -> tuple[str, dict[str, Any]]:
        r = self.mode_results.get(mode)
        if r is None:
            raise _Outcome("skip", f"mode_{mode} got no reply: {self.mode_errors.get(mode, 'it did not run')}")
        s = r.split
        figures = _reply_figures(r)
        if mode == "short":
            if not s.answer:
                raise _Outcome("fail", "short mode gave no answer", figures)
            limit = self.config.short_answer_max_tokens
            if r.finish_reason != "stop" or (r.completion_tokens or 0) > limit:
                raise _Outcome(
                    "fail",
                    f"short mode did not stop within {limit} tokens"
                    f" ({r.completion_tokens} tokens, finish_reason {r.finish_reason})",
                    figures,
                )
            return f"answered in {r.completion_tokens} tokens", figures
        if mode == "long":
            if s.truncated_reasoning or not s.thought:
                why = "its reasoning never closed" if s.thought else "it did not reason"
                raise _Outcome("fail", f"long mode: {why} within {self.config.behaviour_max_tokens} tokens", figures)
            if not s.answer:
                raise _Outcome("fail", "long mode closed its reasoning but gave no answer", figures)
            return f"reasoned ({len(s.reasoning)} chars), closed, answered", figures
        if s.truncated_reasoning:
            raise _Outcome(
                "fail", f"auto mode: reasoning never closed within {self.config.behaviour_max_tokens} tokens", figures
            )
        if not s.answer:
            raise _Outcome("fail", "auto mode gave no answer", figures)
        return ("thought, then answered" if s.thought else "answered directly"), figures


_BEHAVIOUR_NAMES = {"short": "is_short", "long": "closes_then_answers", "auto": "answers"}


def run_smoke(config: SmokeConfig, on_check: Callable[[CheckResult], None] | None = None) -> SmokeReport:
    """Run every check against `config.url`; a report, whatever the endpoint did.

    Raises EnvironmentProblem only when nothing answers at the URL at all, and UsageError for
    an unknown mode. A failed check is in the report, never raised.
    """
    return _Runner(config, on_check).run()
