"""`r4b-deploy smoke` against a real vLLM (CPU build) serving the tiny random-weight R-4B model.

Random weights answer gibberish, so the protocol level must pass and the model-behaviour level
must fail only where it judges answers. The `vllm_server` fixture (tests/fixtures/vllm_server.py)
starts the server once per session, or skips / fails in CI when vLLM's CPU build is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from r4b_deploy.checks.smoke import IMAGE_PROMPT, SmokeConfig, SmokeReport, run_smoke
from r4b_deploy.client.http import EndpointClient
from r4b_deploy.client.images import SMALL_IMAGE_SIZE_PX, colour_bars_png, png_data_url
from r4b_deploy.errors import ExitCode

pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.slow]

LIVENESS_BOUND_S = 600.0  # not a timing: a smoke run still going after this has hung
REQUEST_TIMEOUT_S = 120.0  # CPU inference on a busy 2-core machine
# The tiny model's SigLIP tile (tiny_model.py VISION image_size): an image within one tile gets one.
TINY_TILE_PX = 32


def cli(args: list[str], api_key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_API_KEY", "R4B_DEBUG")}
    env["COLUMNS"] = "200"
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "r4b_deploy", "smoke", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=LIVENESS_BOUND_S,
    )


@pytest.fixture(scope="module")
def protocol_run(vllm_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One protocol-level CLI run, shared by the tests below (each run costs CPU inference)."""
    out = tmp_path_factory.mktemp("smoke")
    done = cli(
        [
            "--url", vllm_server.url,
            "--model", vllm_server.served_model_name,
            "--protocol-only",
            "--timeout", str(REQUEST_TIMEOUT_S),
            "--json", str(out / "smoke.json"),
            "--junit", str(out / "smoke.xml"),
        ],
        vllm_server.api_key,
    )  # fmt: skip
    return {"done": done, "json": out / "smoke.json", "junit": out / "smoke.xml", "key": vllm_server.api_key}


def test_protocol_smoke_passes(protocol_run: dict[str, Any]) -> None:
    done = protocol_run["done"]
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    if protocol_run["key"]:
        assert protocol_run["key"] not in done.stdout + done.stderr


def test_json_and_junit_are_written_and_valid(protocol_run: dict[str, Any]) -> None:
    report = SmokeReport.model_validate_json(protocol_run["json"].read_text())
    assert report.ok and report.failed == 0
    protocol = [c for c in report.checks if c.level == "protocol"]
    assert protocol and all(c.status == "pass" for c in protocol)
    assert all(c.status == "skip" for c in report.checks if c.level == "model")
    suite = ET.parse(protocol_run["junit"]).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests")) == len(report.checks) and suite.get("failures") == "0"
    assert int(suite.get("skipped")) == report.skipped
    if protocol_run["key"]:
        for path in (protocol_run["json"], protocol_run["junit"]):
            assert protocol_run["key"] not in path.read_text()


def test_modes_change_prompt_tokens(protocol_run: dict[str, Any]) -> None:
    tokens = json.loads(protocol_run["json"].read_text())["mode_prompt_tokens"]
    assert set(tokens) == {"none", "auto", "long", "short"}
    assert tokens["long"] != tokens["none"] and tokens["short"] != tokens["none"]
    assert len({tokens["auto"], tokens["long"], tokens["short"]}) == 3


def test_image_prompt_tokens_are_reported(protocol_run: dict[str, Any]) -> None:
    report = SmokeReport.model_validate_json(protocol_run["json"].read_text())
    assert report.image_prompt_tokens["small"] > 0
    assert report.image_prompt_tokens["large"] >= report.image_prompt_tokens["small"]


def test_tiny_model_tiles_only_below_its_grid(protocol_run: dict[str, Any], vllm_server: Any) -> None:
    """Issue 12: what the tiny model's vision tower can show. Its anyres grid tops out at 2x2 tiles of
    32 px, which the smoke's small image already fills: both smoke images cost the same, and only an
    image within one tile costs fewer tokens (vLLM's real processor tiles it)."""
    report = SmokeReport.model_validate_json(protocol_run["json"].read_text())
    small, large = report.image_prompt_tokens["small"], report.image_prompt_tokens["large"]
    assert small == large
    aspect = SMALL_IMAGE_SIZE_PX[1] / SMALL_IMAGE_SIZE_PX[0]
    one_tile = png_data_url(colour_bars_png(TINY_TILE_PX, round(TINY_TILE_PX * aspect)))
    parts = [{"type": "image_url", "image_url": {"url": one_tile}}, {"type": "text", "text": IMAGE_PROMPT}]
    with EndpointClient(
        vllm_server.url,
        api_key=vllm_server.api_key or None,
        timeout_s=REQUEST_TIMEOUT_S,
        served_model_name=vllm_server.served_model_name,
    ) as client:
        with_image = client.chat([{"role": "user", "content": parts}], max_tokens=1)
        text_only = client.chat([{"role": "user", "content": IMAGE_PROMPT}], max_tokens=1)
    assert with_image.prompt_tokens is not None and text_only.prompt_tokens is not None
    one_tile_cost = with_image.prompt_tokens - text_only.prompt_tokens
    assert 0 < one_tile_cost < small, (one_tile_cost, small)


def test_random_weights_fail_only_model_behaviour_checks(vllm_server: Any) -> None:
    report = run_smoke(
        SmokeConfig(
            url=vllm_server.url,
            api_key=SecretStr(vllm_server.api_key) if vllm_server.api_key else None,
            served_model_name=vllm_server.served_model_name,
            timeout_s=REQUEST_TIMEOUT_S,
        )
    )
    failed = report.failures()
    assert failed, "a random-weight model passed the model-behaviour checks"
    assert {c.level for c in failed} == {"model"}, [(c.name, c.reason) for c in failed]
    # The tiny model's tile grid is full at the small image: the tiling check says so.
    tiles = next(c for c in failed if c.name == "image_tiles")
    assert "tiny model" in tiles.reason


def test_deployment_folder_supplies_url_and_key(vllm_server: Any) -> None:
    if vllm_server.log_path is None:
        pytest.skip("an external server (R4B_TEST_VLLM_URL) has no deployment folder")
    folder: Path = vllm_server.log_path.parent
    done = cli(
        ["--deployment", str(folder), "--protocol-only", "--mode", "short", "--timeout", str(REQUEST_TIMEOUT_S)],
        api_key=None,
    )
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert vllm_server.api_key not in done.stdout + done.stderr
