"""A model without R-4B's thinking modes (modes=[], as a plan of Qwen3-VL-4B-Thinking says):
its mode checks are skipped with the reason, never failed (real sockets, the fake endpoint)."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

from pydantic import SecretStr

from r4b_deploy.checks.junit import junit_xml
from r4b_deploy.checks.report import report_json
from r4b_deploy.checks.smoke import SmokeConfig, run_smoke

MODE_CHECKS = ["mode_auto", "mode_long", "mode_short", "modes_reach_template"]
MODE_BEHAVIOUR_CHECKS = ["short_is_short", "long_closes_then_answers", "auto_answers"]


def test_a_model_without_modes_skips_the_mode_checks_with_the_reason(fake_openai_server: Any) -> None:
    # a template that ignores thinking_mode: every mode check would fail were it sent
    server = fake_openai_server(honour_modes=False)
    config = SmokeConfig(url=server.url, api_key=SecretStr(server.api_key), timeout_s=5.0, modes=[])
    report = run_smoke(config)

    assert report.ok and report.failed == 0, report.failures()
    skipped = {c.name: c for c in report.checks if c.status == "skip"}
    assert sorted(skipped) == sorted(MODE_CHECKS + MODE_BEHAVIOUR_CHECKS)
    assert all("no thinking modes" in c.reason for c in skipped.values())
    assert report.modes == [] and report.mode_prompt_tokens == {}
    # the checks that do not need a mode still run and pass
    passed = {c.name for c in report.checks if c.status == "pass"}
    assert {"text", "text_stream", "image_small", "no_stray_think_tag", "image_answer"} <= passed

    data = json.loads(report_json(report))
    assert data["skipped"] == len(skipped) and data["failed"] == 0
    suite = ElementTree.fromstring(junit_xml(report))
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None and suite.get("skipped") == str(len(skipped)) and suite.get("failures") == "0"


def test_a_model_without_modes_is_still_checked_at_protocol_level(fake_openai_server: Any) -> None:
    server = fake_openai_server(honour_modes=False)
    config = SmokeConfig(url=server.url, api_key=SecretStr(server.api_key), timeout_s=5.0, modes=[], protocol_only=True)
    report = run_smoke(config)
    assert report.ok
    names = [c.name for c in report.checks]
    assert len(names) == len(set(names))  # each check once, skipped for one reason only
    assert {c.name for c in report.checks if c.status == "skip"} >= set(MODE_CHECKS + MODE_BEHAVIOUR_CHECKS)
