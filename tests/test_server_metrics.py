"""The server's own clock: Prometheus pages read, series found, window differences and bucket quantiles,
and the scraper against a real HTTP server whose page changes while it is read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.runtime_options import MetricsSpec
from bench.server_time.prometheus import parse
from bench.server_time.server_metrics import (
    UNIT_MS,
    MetricsScraper,
    Reading,
    bucket_quantile,
    detect_series,
    read_series,
)

PAGE = """# HELP rest_server_request_duration_seconds Duration
# TYPE rest_server_request_duration_seconds histogram
rest_server_request_duration_seconds_bucket{method="POST",path="/v2/models/{model_name}/infer",le="0.005"} 60.0
rest_server_request_duration_seconds_bucket{method="POST",path="/v2/models/{model_name}/infer",le="0.01"} 90.0
rest_server_request_duration_seconds_bucket{method="POST",path="/v2/models/{model_name}/infer",le="+Inf"} 100.0
rest_server_request_duration_seconds_sum{method="POST",path="/v2/models/{model_name}/infer"} 0.5
rest_server_request_duration_seconds_count{method="POST",path="/v2/models/{model_name}/infer"} 100.0
rest_server_request_duration_seconds_bucket{method="GET",path="/ready",le="0.005"} 7.0
rest_server_request_duration_seconds_bucket{method="GET",path="/ready",le="0.01"} 7.0
rest_server_request_duration_seconds_bucket{method="GET",path="/ready",le="+Inf"} 7.0
rest_server_request_duration_seconds_sum{method="GET",path="/ready"} 0.007
rest_server_request_duration_seconds_count{method="GET",path="/ready"} 7.0
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
weird line that is not a sample
label_with_quote{a="x\\"y"} 3 1700000000000
"""
POST = MetricsSpec(duration="rest_server_request_duration_seconds", labels={"method": "POST"})


def test_a_page_is_read_with_its_types_labels_and_escapes() -> None:
    page = parse(PAGE)
    assert page.types["rest_server_request_duration_seconds"] == "histogram"
    assert page.total("rest_server_request_duration_seconds_count", {}) == 107.0
    assert page.total("rest_server_request_duration_seconds_count", {"method": "POST"}) == 100.0
    assert page.total("no_such_series", {}) is None
    (quoted,) = [sample for sample in page.samples if sample.name == "label_with_quote"]
    assert quoted.label("a") == 'x"y' and quoted.value == 3.0
    assert page.buckets("rest_server_request_duration_seconds", {"method": "POST"})[-1] == (float("inf"), 100.0)


def test_the_request_duration_series_is_found_on_a_page_nobody_described() -> None:
    assert detect_series(parse(PAGE)) == "rest_server_request_duration_seconds"
    assert detect_series(parse("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1\n")) is None


def test_bucket_quantiles_interpolate_as_prometheus_does() -> None:
    buckets = [(0.005, 60.0), (0.01, 90.0), (float("inf"), 100.0)]
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.005 * 50 / 60)
    assert bucket_quantile(buckets, 0.75) == pytest.approx(0.0075)
    assert bucket_quantile(buckets, 0.99) == 0.01  # in the +Inf bucket: only its lower bound is known
    assert bucket_quantile([], 0.5) is None and bucket_quantile([(1.0, 0.0)], 0.5) is None


def test_a_counter_of_total_time_with_a_counter_of_requests() -> None:
    page = parse("ts_inference_latency_microseconds{model_name=\"m\"} 5000\nts_inference_requests_total 20\n")
    spec = MetricsSpec(duration="ts_inference_latency_microseconds", unit="us", count="ts_inference_requests_total")
    reading = read_series(page, spec, spec.duration)
    assert reading is not None and (reading.count, reading.total) == (20.0, 5000.0)


def test_the_window_is_the_difference_of_the_totals_at_its_edges() -> None:
    scraper = MetricsScraper("http://127.0.0.1:9/metrics", POST, series=POST.duration)
    scraper.readings = [Reading(99.0, 10.0, 0.02, ((0.005, 10.0), (0.01, 10.0), (float("inf"), 10.0))),
                        Reading(100.0, 20.0, 0.04, ((0.005, 20.0), (0.01, 20.0), (float("inf"), 20.0))),
                        Reading(101.0, 70.0, 0.29, ((0.005, 50.0), (0.01, 70.0), (float("inf"), 70.0))),
                        Reading(102.0, 120.0, 0.54, ((0.005, 90.0), (0.01, 120.0), (float("inf"), 120.0))),
                        Reading(103.0, 120.0, 0.54, ((0.005, 90.0), (0.01, 120.0), (float("inf"), 120.0)))]
    metrics = scraper.summary(100.0, 102.0)
    assert metrics.error is None and metrics.requests == 100.0  # 120 - 20: the warm-up's 20 not counted
    assert metrics.mean_ms == pytest.approx(5.0)  # (0.54 - 0.04) s / 100
    assert metrics.p50_ms == pytest.approx(5.0 * 50 / 70)  # 70 of the 100 under 5 ms
    assert [(second.t, second.requests) for second in metrics.per_second] == [(0, 50.0), (1, 50.0)]
    # an edge between readings: the totals there are interpolated, not taken from the nearest reading
    assert scraper.summary(100.5, 102.0).requests == pytest.approx(120.0 - 45.0)
    assert scraper.summary(100.0, 110.0).error == "too few readings to cover the measured window"


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server whose page is pages[-1]; a test appends to change it."""
    pages = [PAGE]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = pages[-1].encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()


def test_the_scraper_reads_a_live_page_and_says_what_is_missing(metrics_server: tuple[str, list[str]]) -> None:
    base, pages = metrics_server
    scraper = MetricsScraper(f"{base}/metrics", MetricsSpec())  # nothing named: the series is detected
    scraper()
    pages.append(PAGE.replace("} 100.0", "} 150.0").replace("} 0.5", "} 1.0"))
    scraper()
    assert scraper.series == "rest_server_request_duration_seconds" and len(scraper.readings) == 2
    assert scraper.readings[1].count - scraper.readings[0].count == 50.0
    missing = MetricsScraper(f"{base}/metrics", MetricsSpec(duration="request_predict_seconds"))
    missing()
    assert missing.readings == [] and "no series request_predict_seconds" in (missing.problem or "")
    unreachable = MetricsScraper(f"{base}/nothing", MetricsSpec())
    unreachable()
    assert "HTTPError" in (unreachable.problem or "")


def test_the_report_shows_the_server_s_clock_beside_the_client_s_from_saved_files(tmp_path: Path) -> None:
    from report_runs import materialise

    from bench.report.render import render_run_reports
    from bench.results.profiles import ServerMetrics
    from bench.results.store import load_results, write_results

    run = materialise("fake-v2", tmp_path / "run")
    results = load_results(run)
    first = results.cells[0]
    assert first.latency_ok.mean is not None
    metrics = ServerMetrics(url="http://127.0.0.1:9/metrics", series="request_predict_seconds", scrapes=20,
                            requests=float(first.counts.completed), mean_ms=first.latency_ok.mean - 0.25,
                            p50_ms=0.3, p99_ms=2.5, queue_series="queued", queue_mean_ms=0.125)
    failed = ServerMetrics(url="http://127.0.0.1:9/metrics", series="", scrapes=0,
                           error="http://127.0.0.1:9/metrics: ConnectionError")
    cells = (first.model_copy(update={"server_metrics": metrics}),
             results.cells[1].model_copy(update={"server_metrics": failed}), *results.cells[2:])
    write_results(run / "results.json", results.model_copy(update={"cells": cells}))
    html = render_run_reports([run])[0].read_text()
    section = html[html.index('<section id="server-clock">'):]
    section = section[:section.index("</section>")]
    assert "<code>request_predict_seconds</code>" in section and "0.250 ms" in section  # outside the server
    assert "0.300 ms" in section and "2.50 ms" in section and "0.125 ms" in section  # queued in the server
    assert "ConnectionError" in section  # a cell whose page could not be read says why
    assert 'href="#server-clock"' in html and "<script" not in html



# An excerpt of a real page (2026-12-04): TorchServe 0.12 in metrics_mode prometheus, a trailing comma in
# every label set and totals in E notation.
TORCHSERVE_PAGE = """# HELP ts_inference_requests_total Torchserve prometheus counter metric with unit: Count
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="iris-logreg",model_version="default",hostname="vm",} 6.0
# HELP ts_inference_latency_microseconds Torchserve prometheus counter metric with unit: Microseconds
# TYPE ts_inference_latency_microseconds counter
ts_inference_latency_microseconds{model_name="iris-logreg",model_version="default",hostname="vm",} 1.0757062156E7
# HELP PredictionTime Torchserve prometheus gauge metric with unit: ms
# TYPE PredictionTime gauge
PredictionTime{ModelName="iris-logreg",Level="Model",Hostname="vm",} 1.55
# TYPE ts_queue_latency_microseconds counter
ts_queue_latency_microseconds{model_name="iris-logreg",model_version="default",hostname="vm",} 1.0705684555E7
"""


def test_what_torchserve_declares_reads_its_real_page() -> None:
    from bench.config import load_runtime

    spec = load_runtime("torchserve").metrics
    assert spec is not None and spec.duration and spec.count
    page = parse(TORCHSERVE_PAGE)
    assert dict(page.samples[0].labels) == {"model_name": "iris-logreg", "model_version": "default", "hostname": "vm"}
    reading = read_series(page, spec, spec.duration)
    assert reading is not None and (reading.count, reading.total) == (6.0, 1.0757062156e7)
    assert reading.buckets == ()  # counters: a mean, no percentiles
    assert reading.total * UNIT_MS[spec.unit] / reading.count == pytest.approx(1792.8, abs=0.1)  # ms
    assert spec.queue == "ts_queue_latency_microseconds" and reading.queue == 1.0705684555e7


def test_exactly_the_runtimes_whose_clock_is_usable_declare_one() -> None:
    """TorchServe in metrics_mode prometheus; not Seldon (its microservice times nothing) nor Ray Serve (its
    agent's page moves in 10-second steps): each runtime.yaml says why."""
    from bench.config import available_runtimes, load_runtime

    declared = {name for name in available_runtimes() if load_runtime(name).metrics is not None}
    assert declared == {"mlserver", "bentoml", "kserve", "torchserve"}


def test_the_servers_queue_time_is_a_part_of_its_mean_over_the_window() -> None:
    """A counter of total queue time beside the counters of total time and requests: the window's queue mean
    is its growth over the requests counted, interpolated at the window's edges like the rest."""
    spec = MetricsSpec(duration="total_us", count="requests_total", unit="us", queue="queued_us")
    scraper = MetricsScraper("http://127.0.0.1:9/metrics", spec)
    # 100 requests a second, each 4 ms in the server, 1.5 ms of it queued
    scraper.readings = [Reading(100.0 + k, 100.0 * k, 400_000.0 * k, (), 150_000.0 * k) for k in range(6)]
    metrics = scraper.summary(101.5, 104.5)
    assert metrics.requests == pytest.approx(300.0) and metrics.mean_ms == pytest.approx(4.0)
    assert metrics.queue_series == "queued_us" and metrics.queue_mean_ms == pytest.approx(1.5)
    plain = MetricsScraper("http://127.0.0.1:9/metrics", MetricsSpec(duration="total_us", count="requests_total"))
    plain.readings = [Reading(100.0 + k, 100.0 * k, 0.4 * k) for k in range(6)]
    assert plain.summary(101.5, 104.5).queue_mean_ms is None  # no queue series declared: none shown
