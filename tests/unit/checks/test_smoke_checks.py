"""run_smoke's verdicts against a well-behaved and a subtly wrong fake endpoint (real sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from r4b_deploy.checks.junit import junit_xml
from r4b_deploy.checks.report import report_json
from r4b_deploy.checks.smoke import CheckResult, SmokeConfig, SmokeReport, run_smoke
from r4b_deploy.errors import UsageError

PROTOCOL_CHECKS = [
    "health",
    "models",
    "text",
    "text_stream",
    "image_small",
    "image_large",
    "mode_auto",
    "mode_long",
    "mode_short",
    "modes_reach_template",
    "no_stray_think_tag",
]
MODEL_CHECKS = ["image_answer", "image_tiles", "short_is_short", "long_closes_then_answers", "auto_answers"]


def smoke(server: Any, **options: Any) -> SmokeReport:
    config = SmokeConfig(
        url=server.url,
        api_key=SecretStr(server.api_key) if server.api_key else None,
        served_model_name=options.pop("served_model_name", server.served_model_name),
        timeout_s=options.pop("timeout_s", 5.0),
        **options,
    )
    return run_smoke(config)


def statuses(report: SmokeReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_good_endpoint_passes_every_check(fake_openai: Any) -> None:
    seen: list[CheckResult] = []
    report = run_smoke(
        SmokeConfig(url=fake_openai.url, api_key=SecretStr(fake_openai.api_key), timeout_s=5.0), on_check=seen.append
    )
    assert [c.name for c in report.checks] == PROTOCOL_CHECKS + MODEL_CHECKS
    assert report.ok and report.failed == 0 and report.passed == len(report.checks)
    assert seen == report.checks  # the live callback saw each check, in order
    assert report.served_models == ["r4b"]
    # the fake's image cost: 10 + one token per 32x32 patch
    assert report.image_prompt_tokens == {"small": 10 + 2 * 2, "large": 10 + 32 * 24}
    assert report.mode_prompt_tokens["short"] == report.mode_prompt_tokens["none"] + 6
    assert report.mode_prompt_tokens["long"] == report.mode_prompt_tokens["none"] + 2
    assert report.auto_thought is True
    assert all(c.time_ms >= 0 for c in report.checks)


@pytest.mark.parametrize("reasoning_field", ["reasoning", "reasoning_content"])
def test_parser_fields_pass_too(fake_openai_server: Any, reasoning_field: str) -> None:
    assert smoke(fake_openai_server(reasoning_field=reasoning_field)).ok


def test_protocol_only_skips_model_checks(fake_openai_server: Any) -> None:
    # a model that names the wrong colour: only the model-behaviour check notices
    server = fake_openai_server(answer="blue sky")
    full = smoke(server)
    assert statuses(full)["image_answer"] == "fail" and not full.ok
    report = smoke(server, protocol_only=True)
    assert report.ok
    skipped = [c for c in report.checks if c.status == "skip"]
    assert [c.name for c in skipped] == MODEL_CHECKS
    assert all(c.level == "model" and "--protocol-only" in c.reason for c in skipped)


def test_one_mode_only(fake_openai: Any) -> None:
    report = smoke(fake_openai, modes=["long"])
    names = [c.name for c in report.checks]
    assert "mode_long" in names and "mode_short" not in names and "mode_auto" not in names
    assert "long_closes_then_answers" in names and "short_is_short" not in names
    assert set(report.mode_prompt_tokens) == {"none", "long"}
    assert report.ok


def test_unknown_mode_is_a_usage_error(fake_openai: Any) -> None:
    with pytest.raises(UsageError):
        smoke(fake_openai, modes=["sideways"])


def test_auto_records_which_way_the_model_went(fake_openai_server: Any) -> None:
    report = smoke(fake_openai_server(auto_thinks=False))
    assert report.ok and report.auto_thought is False
    auto = next(c for c in report.checks if c.name == "mode_auto")
    assert auto.figures["thought"] is False and "without thinking" in auto.reason


def test_stray_close_tag_fails(fake_openai_server: Any) -> None:
    report = smoke(fake_openai_server(stray_close_tag=True))
    assert statuses(report)["no_stray_think_tag"] == "fail"
    failed = [c.name for c in report.checks if c.status == "fail"]
    assert failed == ["no_stray_think_tag"]


def test_a_template_that_ignores_the_kwarg_fails(fake_openai_server: Any) -> None:
    report = smoke(fake_openai_server(honour_modes=False))
    s = statuses(report)
    assert s["modes_reach_template"] == "fail"
    assert s["mode_short"] == "fail"  # the reply thinks: short mode never reached the template
    check = next(c for c in report.checks if c.name == "modes_reach_template")
    assert "ignores chat_template_kwargs" in check.reason


def test_modes_counted_by_tokenize_when_usage_is_missing(fake_openai_server: Any) -> None:
    server = fake_openai_server(behaviour="malformed_sse")  # streamed mode replies break; /tokenize works
    report = smoke(server, protocol_only=True)
    check = next(c for c in report.checks if c.name == "modes_reach_template")
    assert check.status == "pass"
    assert set(check.figures["source"].values()) == {"tokenize"}


def test_long_mode_truncated_at_protocol_level_passes_but_not_at_model_level(fake_openai_server: Any) -> None:
    server = fake_openai_server(reasoning_chunks=200)  # reasoning longer than any limit below
    report = smoke(server, max_tokens=16, behaviour_max_tokens=64)
    s = statuses(report)
    assert s["mode_long"] == "pass"
    assert s["long_closes_then_answers"] == "fail"
    long_check = next(c for c in report.checks if c.name == "mode_long")
    assert long_check.figures["truncated_reasoning"] is True


def test_short_mode_must_be_short_for_a_real_model(fake_openai_server: Any) -> None:
    server = fake_openai_server(answer=" ".join(["word"] * 80))
    report = smoke(server, short_answer_max_tokens=20)
    assert statuses(report)["short_is_short"] == "fail"


def test_the_key_never_reaches_the_report(fake_openai: Any) -> None:
    report = smoke(fake_openai)
    for text in (report_json(report), junit_xml(report), repr(report)):
        assert fake_openai.api_key not in text


def test_report_json_round_trips(fake_openai: Any) -> None:
    report = smoke(fake_openai)
    data = json.loads(report_json(report))
    assert data["passed"] == report.passed and data["failed"] == 0 and data["ok"] is True
    assert SmokeReport.model_validate(data).checks == report.checks


def test_a_larger_image_must_cost_more_tokens_with_real_weights(fake_openai_server: Any) -> None:
    """Issue 12: R-4B's anyres tiling cuts a larger image into more tiles; a processor whose tile grid
    the small image already fills (the rehearsal's tiny model: 2x2 tiles of 32 px) costs the same for
    both, which only the model-behaviour level may call a failure."""
    server = fake_openai_server(image_max_patches=4)  # the 64x48 image's 2x2 patches: the grid is full
    report = smoke(server)
    assert report.image_prompt_tokens["small"] == report.image_prompt_tokens["large"]
    tiles = next(c for c in report.checks if c.name == "image_tiles")
    assert (tiles.status, tiles.level) == ("fail", "model")
    assert "no more than" in tiles.reason and "tiny model" in tiles.reason
    assert tiles.figures == {"small_image_tokens": 14, "large_image_tokens": 14}
    assert [c.name for c in report.failures()] == ["image_tiles"]
    assert smoke(server, protocol_only=True).ok


def test_image_tiles_passes_when_the_larger_image_costs_more(fake_openai: Any) -> None:
    tiles = next(c for c in smoke(fake_openai).checks if c.name == "image_tiles")
    assert tiles.status == "pass"
    assert tiles.figures == {"small_image_tokens": 14, "large_image_tokens": 10 + 32 * 24}
