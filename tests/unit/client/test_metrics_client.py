"""Reading a vLLM server's request count from /metrics (client/metrics.py): the parser on a
real-looking page, and the GET against a loopback server (and against nothing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r4b_deploy.client.metrics import (
    METRICS_MAX_BYTES,
    REQUEST_SUCCESS_METRIC,
    counter_total,
    metrics_url,
    requests_served,
)
from r4b_deploy.launch.ports import free_port

# The shape of vLLM's V1 /metrics page (vllm/v1/metrics/loggers.py, PrometheusStatLogger): every
# series labelled `engine` and `model_name`, the success counter also `finished_reason`, written
# by prometheus_client's text exposition (labels sorted, a `_created` sample beside each counter
# sample, floats with `.0`). An excerpt: the real page also holds many more histograms.
VLLM_METRICS_PAGE = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 12187.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="r4b"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="r4b"} 0.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="r4b"} 3.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="r4b"} 18.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="r4b"} 0.0
# HELP vllm:request_success_created Count of successfully processed requests.
# TYPE vllm:request_success_created gauge
vllm:request_success_created{engine="0",finished_reason="stop",model_name="r4b"} 1.7645904e+09
vllm:request_success_created{engine="0",finished_reason="length",model_name="r4b"} 1.7645904e+09
vllm:request_success_created{engine="0",finished_reason="abort",model_name="r4b"} 1.7645904e+09
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="r4b"} 2.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="r4b"} 21.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="r4b"} 21.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="r4b"} 14.62
"""


def test_the_success_counter_is_summed_over_its_labels() -> None:
    assert counter_total(VLLM_METRICS_PAGE, REQUEST_SUCCESS_METRIC) == 21.0


def test_created_samples_and_other_metrics_are_not_counted() -> None:
    page = VLLM_METRICS_PAGE + 'vllm:request_success_total_other{engine="0"} 100.0\n'
    assert counter_total(page, REQUEST_SUCCESS_METRIC) == 21.0


def test_a_page_without_the_counter_gives_none() -> None:
    assert counter_total("# HELP x y\nx 1.0\n", REQUEST_SUCCESS_METRIC) is None
    assert counter_total("", REQUEST_SUCCESS_METRIC) is None


def test_label_values_may_hold_braces_commas_spaces_and_escaped_quotes() -> None:
    page = (
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="a} b,\\"c\\""} 4.0\n'
        'vllm:request_success_total{engine="1",finished_reason="stop",model_name="plain"} 5 1764590400000\n'
        "vllm:request_success_total 1\n"
    )
    assert counter_total(page, REQUEST_SUCCESS_METRIC) == 10.0


@pytest.mark.parametrize("value", ["NaN", "+Inf", "not-a-number"])
def test_a_value_that_is_no_finite_number_gives_none(value: str) -> None:
    page = f'vllm:request_success_total{{finished_reason="stop"}} 3.0\nvllm:request_success_total{{x="y"}} {value}\n'
    assert counter_total(page, REQUEST_SUCCESS_METRIC) is None


def test_metrics_url_takes_a_trailing_slash() -> None:
    assert metrics_url("http://127.0.0.1:8001/") == "http://127.0.0.1:8001/metrics"


class _Metrics(BaseHTTPRequestHandler):
    body = VLLM_METRICS_PAGE.encode()

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def metrics_server() -> Iterator[str]:
    yield from _serve(_Metrics)


def test_requests_served_reads_the_page(metrics_server: str) -> None:
    assert requests_served(metrics_server) == 21


def test_nothing_listening_is_none_not_an_error() -> None:
    assert requests_served(f"http://127.0.0.1:{free_port()}", timeout_s=1.0) is None


def test_a_page_past_the_cap_is_none() -> None:
    class _Huge(_Metrics):
        body = VLLM_METRICS_PAGE.encode() + b"#" * METRICS_MAX_BYTES

    for url in _serve(_Huge):
        assert requests_served(url) is None


def test_a_server_without_metrics_is_none() -> None:
    class _NoMetrics(_Metrics):
        def do_GET(self) -> None:
            self.path = "/elsewhere"
            super().do_GET()

    for url in _serve(_NoMetrics):
        assert requests_served(url) is None
