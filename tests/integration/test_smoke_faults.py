"""`r4b-deploy smoke` against real loopback servers that misbehave on purpose.

Each fault gives a clear message or counted failures, never a traceback or a hang, and the
exit code says which: 0 all passed, 1 checks failed, 2 nothing answers at the URL. Run through
the library and through the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from r4b_deploy.checks.smoke import SmokeConfig, SmokeReport, run_smoke
from r4b_deploy.errors import EnvironmentProblem, ExitCode

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT_S = 1.0
LIVENESS_BOUND_S = 120.0  # not a timing: a CLI run still going after this has hung


def cli(args: list[str], api_key: str | None = None, *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_API_KEY", "R4B_DEBUG")}
    env["COLUMNS"] = "200"
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "r4b_deploy", "smoke", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=LIVENESS_BOUND_S,
        cwd=cwd,
    )


def library(server: Any, **options: Any) -> SmokeReport:
    key = options.pop("api_key", server.api_key)
    return run_smoke(
        SmokeConfig(
            url=server.url,
            api_key=SecretStr(key) if key else None,
            timeout_s=REQUEST_TIMEOUT_S,
            **options,
        )
    )


def by_name(report: SmokeReport) -> dict[str, Any]:
    return {c.name: c for c in report.checks}


def assert_clean(done: subprocess.CompletedProcess[str], code: int, *secrets: str) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    for secret in secrets:
        assert secret not in done.stdout and secret not in done.stderr


# -- library ---------------------------------------------------------------------------------


def test_nothing_listening_is_an_environment_problem(free_port_url: str) -> None:
    with pytest.raises(EnvironmentProblem) as info:
        run_smoke(SmokeConfig(url=free_port_url, timeout_s=REQUEST_TIMEOUT_S))
    assert info.value.message.startswith(f"nothing answers at {free_port_url}")
    assert "r4b-deploy status" in (info.value.fix or "") and "r4b-deploy up" in (info.value.fix or "")


@pytest.mark.parametrize("status_code", [500, 503])
def test_server_errors_fail_every_check_that_needs_the_model(fake_openai_server: Any, status_code: int) -> None:
    report = library(fake_openai_server(behaviour="status", status_code=status_code))
    checks = by_name(report)
    assert checks["health"].status == "pass"
    assert checks["text"].status == "fail" and checks["text"].reason.startswith(f"{status_code}: server error")
    assert checks["text"].figures["error_kind"] == "http_5xx"
    assert not report.ok


def test_429_after_k_requests_fails_the_later_checks(fake_openai_server: Any) -> None:
    server = fake_openai_server(behaviour="status", status_code=429, fail_after=3)
    checks = by_name(library(server))
    assert [checks[n].status for n in ("models", "text", "text_stream")] == ["pass"] * 3
    assert checks["image_small"].status == "fail" and "429: rate limited" in checks["image_small"].reason


def test_a_hanging_health_endpoint_skips_the_rest(fake_openai_server: Any) -> None:
    report = library(fake_openai_server(behaviour="hang", fault_health=True))
    checks = report.checks
    assert checks[0].name == "health" and checks[0].status == "fail" and "timeout" in checks[0].reason
    assert all(c.status == "skip" and "did not answer /health" in c.reason for c in checks[1:])


def test_a_server_that_stops_answering_is_given_up_on(fake_openai_server: Any) -> None:
    report = library(fake_openai_server(behaviour="hang"))  # /health fine, everything else hangs
    statuses = [c.status for c in report.checks]
    assert statuses[:3] == ["pass", "fail", "fail"]
    assert set(statuses[3:]) == {"skip"}
    assert "stopped answering" in report.checks[3].reason


def test_a_stream_that_stalls_is_bounded(fake_openai_server: Any) -> None:
    checks = by_name(library(fake_openai_server(behaviour="hang_mid_stream")))
    assert checks["text_stream"].status == "fail" and "stalled" in checks["text_stream"].reason


def test_malformed_sse_fails_streamed_checks(fake_openai_server: Any) -> None:
    checks = by_name(library(fake_openai_server(behaviour="malformed_sse")))
    assert checks["text_stream"].status == "fail" and "malformed SSE" in checks["text_stream"].reason
    assert checks["mode_short"].status == "fail"


def test_dropped_connection_fails_with_a_stream_error(fake_openai_server: Any) -> None:
    checks = by_name(library(fake_openai_server(behaviour="drop_mid_stream")))
    assert checks["text_stream"].figures["error_kind"] == "stream"
    assert "broke mid-answer" in checks["text_stream"].reason


def test_wrong_api_key(fake_openai: Any) -> None:
    report = library(fake_openai, api_key="wrong-key-value")
    checks = by_name(report)
    assert checks["health"].status == "pass"
    assert checks["models"].status == "fail" and checks["models"].reason == "401: wrong API key"
    assert report.failed >= 9


def test_unknown_model_name_lists_the_served_names(fake_openai: Any) -> None:
    checks = by_name(library(fake_openai, served_model_name="r4b-typo"))
    assert checks["models"].status == "fail"
    assert "'r4b-typo' is not served" in checks["models"].reason and "'r4b'" in checks["models"].reason
    assert "does not exist" in checks["text"].reason


# -- the real CLI ------------------------------------------------------------------------------


def test_cli_all_pass_writes_json_and_junit(fake_openai: Any, tmp_path: Path) -> None:
    done = cli(
        [
            "--url",
            fake_openai.url,
            "--timeout",
            "5",
            "--json",
            str(tmp_path / "r.json"),
            "--junit",
            str(tmp_path / "r.xml"),
        ],
        api_key=fake_openai.api_key,
    )
    assert_clean(done, ExitCode.OK, fake_openai.api_key)
    assert "16 passed, 0 failed, 0 skipped" in done.stdout  # 11 protocol + 5 model checks
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] is True and report["image_prompt_tokens"]["large"] > report["image_prompt_tokens"]["small"]
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite.get("tests") == "16" and suite.get("failures") == "0"
    for path in (tmp_path / "r.json", tmp_path / "r.xml"):
        assert fake_openai.api_key not in path.read_text()


def test_cli_json_to_stdout_keeps_the_table_on_stderr(fake_openai: Any) -> None:
    done = cli(["--url", fake_openai.url, "--protocol-only", "--json", "-"], api_key=fake_openai.api_key)
    assert_clean(done, ExitCode.OK, fake_openai.api_key)
    report = json.loads(done.stdout)
    assert report["protocol_only"] is True and report["skipped"] == 5  # the 5 model checks
    assert "passed" in done.stderr


def test_cli_nothing_listening_exits_2(free_port_url: str) -> None:
    done = cli(["--url", free_port_url, "--timeout", "2"])
    assert_clean(done, ExitCode.ENVIRONMENT)
    assert done.stderr.startswith(f"error: nothing answers at {free_port_url}")
    assert "r4b-deploy status" in done.stderr


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"behaviour": "status", "status_code": 500}, "500: server error"),
        ({"behaviour": "status", "status_code": 429, "fail_after": 2}, "429: rate limited"),
        ({"behaviour": "hang", "fault_health": True}, "did not answer /health"),
        ({"behaviour": "hang_mid_stream"}, "stalled"),
        ({"behaviour": "malformed_sse"}, "malformed SSE"),
        ({"behaviour": "drop_mid_stream"}, "broke mid-answer"),
    ],
)
def test_cli_faults_exit_1_with_reasons(fake_openai_server: Any, tmp_path: Path, options: dict, phrase: str) -> None:
    server = fake_openai_server(**options)
    junit = tmp_path / "r.xml"
    done = cli(
        ["--url", server.url, "--timeout", str(REQUEST_TIMEOUT_S), "--junit", str(junit)], api_key=server.api_key
    )
    assert_clean(done, ExitCode.CHECK_FAILED, server.api_key)
    assert phrase in done.stdout
    assert "smoke checks failed" in done.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("failures")) >= 1


def test_cli_wrong_key_says_so(fake_openai: Any) -> None:
    done = cli(["--url", fake_openai.url, "--timeout", "5"], api_key="definitely-wrong-key")
    assert_clean(done, ExitCode.CHECK_FAILED, "definitely-wrong-key")
    assert "401: wrong API key" in done.stdout


def test_cli_unknown_model(fake_openai: Any) -> None:
    done = cli(["--url", fake_openai.url, "--model", "nope", "--timeout", "5"], api_key=fake_openai.api_key)
    assert_clean(done, ExitCode.CHECK_FAILED, fake_openai.api_key)
    assert "'nope' is not served; /v1/models lists 'r4b'" in done.stdout


def test_cli_reads_the_key_from_an_env_file(fake_openai: Any, tmp_path: Path) -> None:
    env_file = tmp_path / "r4b.env"
    env_file.write_text(f"# written by a test\nVLLM_API_KEY={fake_openai.api_key}\n")
    env_file.chmod(0o600)
    done = cli(["--url", fake_openai.url, "--env-file", str(env_file), "--protocol-only"])
    assert_clean(done, ExitCode.OK, fake_openai.api_key)


def test_cli_usage_errors_exit_4(tmp_path: Path) -> None:
    assert_clean(cli([]), ExitCode.USAGE)
    assert_clean(cli(["--url", "http://127.0.0.1:9", "--mode", "sideways"]), ExitCode.USAGE)
    missing = cli(["--url", "http://127.0.0.1:9", "--env-file", str(tmp_path / "absent.env")])
    assert_clean(missing, ExitCode.USAGE)


# -- issue 11: bounded time, refused inputs, bounded memory -------------------------------------

TRICKLE_INTERVAL_S = 0.3  # a byte well within each read's timeout: only a total deadline ends a request
CLI_START_S = 10.0  # the CLI's interpreter start and imports, on a busy 2-core machine


@pytest.mark.parametrize(
    "options",
    [{}, {"fault_health": True}, {"trickle_only_streams": True}],
    ids=["chat", "chat_and_health", "streams_only"],
)
def test_cli_a_trickling_server_ends_within_the_runs_bound(fake_openai_server: Any, options: dict) -> None:
    server = fake_openai_server(behaviour="trickle", trickle_interval_s=TRICKLE_INTERVAL_S, **options)
    bound_s = SmokeConfig(url=server.url, timeout_s=REQUEST_TIMEOUT_S, protocol_only=True).time_bound_s()
    t0 = time.monotonic()
    done = cli(["--url", server.url, "--timeout", str(REQUEST_TIMEOUT_S), "--protocol-only"], server.api_key)
    elapsed_s = time.monotonic() - t0
    assert_clean(done, ExitCode.CHECK_FAILED, server.api_key)
    assert elapsed_s < bound_s + CLI_START_S, f"{elapsed_s:.1f} s, bound {bound_s:g} s"
    assert "timeout" in done.stdout and "smoke checks failed" in done.stderr


def test_a_run_sends_no_more_requests_than_its_bound_counts(fake_openai_server: Any) -> None:
    for options in ({}, {"tokenize": False}, {"behaviour": "status", "status_code": 500}):
        server = fake_openai_server(**options)
        config = SmokeConfig(url=server.url, api_key=SecretStr(server.api_key), timeout_s=REQUEST_TIMEOUT_S)
        run_smoke(config)
        assert server.request_count <= config.max_requests(), options


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "inf"],
        ["--timeout", "1e308"],
        ["--timeout", "nan"],
        ["--url", "http://[::1"],
        ["--url", "ftp://127.0.0.1/x"],
        ["--url", "file:///etc/passwd"],
        ["--url", "http://127.0.0.1:99999"],
    ],
)
def test_cli_values_that_cannot_work_are_usage_errors(args: list[str]) -> None:
    done = cli(["--url", "http://127.0.0.1:9", *args])
    assert_clean(done, ExitCode.USAGE)
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("error:")], done.stderr


def test_cli_credentials_in_the_url_are_refused_and_never_shown(fake_openai: Any) -> None:
    password = "pw-never-shown-4711"
    url = fake_openai.url.replace("http://", f"http://user:{password}@")
    done = cli(["--url", url, "--protocol-only"], api_key=fake_openai.api_key)
    assert_clean(done, ExitCode.USAGE, password, fake_openai.api_key)
    assert "credentials in the URL" in done.stderr and "--api-key" in done.stderr
    assert fake_openai.request_count == 0


@pytest.mark.parametrize("flag", ["--json", "--junit"])
def test_cli_an_output_path_that_cannot_be_written_is_refused_before_the_checks(
    fake_openai: Any, tmp_path: Path, flag: str
) -> None:
    for target in (tmp_path, tmp_path / "a-file" / "r.json"):
        (tmp_path / "a-file").write_text("")
        done = cli(["--url", fake_openai.url, flag, str(target)], api_key=fake_openai.api_key)
        assert_clean(done, ExitCode.USAGE, fake_openai.api_key)
        assert f"{target}" in done.stderr and flag in done.stderr
    assert fake_openai.request_count == 0


def test_cli_a_binary_env_file_is_a_usage_error(tmp_path: Path) -> None:
    for content in (b"VLLM_API_KEY=\xff\xfe\x00", b"VLLM_API_KEY=a\x00b\n", bytes(range(256))):
        env_file = tmp_path / "bin.env"
        env_file.write_bytes(content)
        done = cli(["--url", "http://127.0.0.1:9", "--env-file", str(env_file)])
        assert_clean(done, ExitCode.USAGE)


def test_a_huge_reply_fails_its_checks_without_being_read(fake_openai_server: Any) -> None:
    from r4b_deploy.client.wire import BODY_MAX_BYTES

    report = library(fake_openai_server(big_body_bytes=BODY_MAX_BYTES + 1))
    checks = by_name(report)
    assert checks["health"].status == "pass"
    assert checks["models"].status == "fail" and "over 8 MiB" in checks["models"].reason
