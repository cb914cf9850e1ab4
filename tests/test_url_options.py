"""The url target's options, its runtime record and where request headers may go (pure logic)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.load.connection import Endpoint as Connection
from bench.load.connection import prebuilt_posts
from bench.targets.base import Endpoint
from bench.targets.url import UrlOptions, reachable


def parse(url: str = "http://127.0.0.1:8080/v2/models/iris-logreg/infer", protocol: str | None = "v2",
          name: str | None = None, headers: list[str] | None = None, insecure: bool = False,
          ca_cert: str | None = None, worker_url: str | None = None) -> UrlOptions:
    return UrlOptions.parse(url, protocol, name, headers, insecure, ca_cert, worker_url=worker_url)


def test_the_endpoint_becomes_a_runtime_named_after_its_host_and_port() -> None:
    options = parse(headers=["Authorization: Bearer abc", "X-Team:  ml "])
    assert (options.base_url, options.predict_path) == ("http://127.0.0.1:8080", "/v2/models/iris-logreg/infer")
    assert options.headers == (("Authorization", "Bearer abc"), ("X-Team", "ml"))
    runtime = options.runtime()
    assert runtime.name == "url-127-0-0-1-8080" and runtime.protocol == "v2"  # a name starts with a letter
    assert runtime.predict_path == "/v2/models/iris-logreg/infer"
    assert "external endpoint http://127.0.0.1:8080/v2/models/iris-logreg/infer" in runtime.description
    assert "Bearer" not in runtime.model_dump_json()  # headers are not part of what a run records
    assert parse(url="https://models.example.com/predict", name="gateway").runtime().name == "gateway"
    assert parse(url="https://models.example.com/predict").name == "models-example-com"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "http://127.0.0.1:99999/p"}, "the port is not a number"),
    ({"url": "http://127.0.0.1:8080/p?x=1"}, "a query or fragment is not sent"),
    ({"url": "127.0.0.1:8080/p"}, "not an http:// or https:// URL"),
    ({"protocol": None}, "--target url needs --protocol"),
    ({"name": "Prod Gateway"}, "--name Prod Gateway: lower-case letters"),
    ({"headers": ["Content-Type: text/plain"]}, "--header Content-Type: servebench sets it itself"),
    ({"headers": [": value"]}, "not 'Name: value'"),
    ({"url": "https://h/p", "ca_cert": "/nonexistent.pem"}, "--ca-cert /nonexistent.pem: no such file"),
])
def test_bad_options_are_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("?", "\\?")) as error:
        parse(**kwargs)  # type: ignore[arg-type]
    assert error.value.hint


def test_a_malformed_header_error_does_not_echo_its_value() -> None:
    with pytest.raises(BenchError) as error:
        parse(headers=["Authorization=Bearer s3cret"])
    assert "s3cret" not in str(error.value.message) + str(error.value.hint)


def test_tls_settings_reach_requests_and_the_generator(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse(url="https://h/p", insecure=True).verify_tls is False
    options = parse(url="https://h/p", ca_cert=str(bundle))
    endpoint = Endpoint("https://h", "/p", "/p", "v2", "m", verify_tls=options.verify_tls, ca_cert=options.ca_cert)
    assert endpoint.tls_verify == str(bundle)
    assert Endpoint("https://h", "/p", "/p", "v2", "m", verify_tls=False).tls_verify is False
    insecure = Connection.from_url("https://h:8443", verify_tls=False).tls_context()
    assert insecure.check_hostname is False


def test_headers_are_sent_but_never_shown() -> None:
    endpoint = Endpoint("http://h:1", "/p", "/p", "v2", "m", headers=(("X-Api-Key", "s3cret"),))
    assert "s3cret" not in repr(endpoint) and "s3cret" not in str(endpoint)
    (request,) = prebuilt_posts(Connection.from_url("http://h:1"), "/p", "application/json", [b"{}"],
                                endpoint.headers)
    head, body = request.split(b"\r\n\r\n")
    assert b"\r\nX-Api-Key: s3cret" in head and body == b"{}"
    assert head.count(b"Content-Length: 2") == 1


def test_reachable_says_why_not() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert reachable(f"http://127.0.0.1:{port}") is None
    problem = reachable(f"http://127.0.0.1:{port}")
    assert problem is not None and f"127.0.0.1:{port}" in problem and "refused" in problem.lower()


def test_a_metrics_page_makes_the_runtime_declare_its_series() -> None:
    base = "http://127.0.0.1:8080/v2/models/iris-logreg/infer"
    options = UrlOptions.parse(base, "v2", None, None, False, None, "http://127.0.0.1:8082/metrics",
                               "model_infer_request_duration")
    metrics = options.runtime().metrics
    assert metrics is not None and metrics.duration == "model_infer_request_duration"
    detected = UrlOptions.parse(base, "v2", None, None, False, None, "http://127.0.0.1:8082/metrics").runtime()
    assert detected.metrics is not None and detected.metrics.duration == ""  # the first on the page
    assert parse().runtime().metrics is None


@pytest.mark.parametrize(("metrics_url", "series", "message"), [
    ("127.0.0.1:8082/metrics", None, "--metrics-url 127.0.0.1:8082/metrics: not an http://"),
    (None, "request_predict_seconds", "--metrics-series request_predict_seconds: a Prometheus metric name, with"),
    ("http://127.0.0.1:8082/metrics", "not a name!", "--metrics-series not a name!: a Prometheus metric name"),
])
def test_metrics_options_are_checked(metrics_url: str | None, series: str | None, message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("?", r"\?")) as raised:
        UrlOptions.parse("http://127.0.0.1:8080/predict", "kserve-v1", None, None, False, None, metrics_url, series)
    assert raised.value.hint


def test_the_worker_url_replaces_the_host_the_remote_workers_send_to() -> None:
    options = parse(url="http://127.0.0.1:8080/v2/models/m/infer", worker_url="http://m-predictor.ns.svc:80/")
    assert options.worker_base_url == "http://m-predictor.ns.svc:80"
    assert options.base_url == "http://127.0.0.1:8080" and options.predict_path == "/v2/models/m/infer"
    assert parse().worker_base_url is None


@pytest.mark.parametrize("worker_url", ["https://m-predictor.ns.svc", "http://m-predictor.ns.svc/predict",
                                        "m-predictor.ns.svc:80", "http://m-predictor.ns.svc:99999"])
def test_a_worker_url_is_a_host_and_port_of_the_same_scheme(worker_url: str) -> None:
    with pytest.raises(BenchError, match="--worker-url") as error:
        parse(url="http://127.0.0.1:8080/predict", worker_url=worker_url)
    assert error.value.hint


def test_a_user_and_password_in_the_url_become_an_authorization_header_and_leave_the_url() -> None:
    options = parse(url="https://team%40corp:s3cr%3At@models.example.com:8443/v2/models/m/infer")
    assert options.url == "https://models.example.com:8443/v2/models/m/infer"
    assert options.base_url == "https://models.example.com:8443"  # what plan.json and Locust's --host get
    assert options.headers == (("Authorization", "Basic dGVhbUBjb3JwOnMzY3I6dA=="),)  # team@corp:s3cr:t
    assert "s3cr" not in repr(options) and "dGVhbU" not in repr(options)
    recorded = options.runtime().model_dump_json()
    assert "s3cr" not in recorded and "team" not in recorded and "Basic" not in recorded


def test_a_credential_given_twice_or_sent_to_workers_is_refused_without_echoing_it() -> None:
    with pytest.raises(BenchError, match="a user:password and an Authorization header both") as both:
        parse(url="http://u:pw-123@127.0.0.1:8080/p", headers=["Authorization: Bearer tok-456"])
    assert "pw-123" not in str(both.value) and "tok-456" not in str(both.value)
    with pytest.raises(BenchError, match="would travel to every worker") as worker:
        parse(worker_url="http://u:pw-789@10.0.0.5:8080")
    assert "pw-789" not in str(worker.value)


def test_a_metrics_page_credential_is_used_but_recorded_masked() -> None:
    from bench.runtime_options import MetricsSpec
    from bench.server_time.server_metrics import MetricsScraper

    scraper = MetricsScraper("http://u:pw-321@127.0.0.1:1/metrics?token=t-654", MetricsSpec())
    scraper()  # nothing listens on port 1: the problem names the page, masked
    shown = f"{scraper.problem} {scraper!r} {scraper.summary(0.0, 1.0).model_dump_json()}"
    assert "127.0.0.1:1/metrics" in shown and "pw-321" not in shown and "t-654" not in shown


def _cli_url_options(argv: list[str]) -> UrlOptions | None:
    from bench.cli import build_parser
    from bench.cli.options import url_options

    return url_options(build_parser().parse_args(["run", "--target", "url", "--url",
                                                  "http://127.0.0.1:8080/predict", "--protocol", "kserve-v1", *argv]))


def test_headers_from_the_environment_and_a_file_need_never_be_typed(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY", "Authorization: Bearer env-secret")
    headers = tmp_path / "headers.txt"
    headers.write_text("# the team's gateway\nX-Api-Key: file-secret\n\nX-Team: ml\n")
    options = _cli_url_options(["--header-env", "GATEWAY_KEY", "--header-file", str(headers)])
    assert options is not None
    assert options.headers == (("Authorization", "Bearer env-secret"), ("X-Api-Key", "file-secret"), ("X-Team", "ml"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--header-env", "NOT_SET_ANYWHERE"], "--header-env NOT_SET_ANYWHERE: the variable is not set or empty"),
    (["--header-file", "/nonexistent/headers"], "--header-file /nonexistent/headers: cannot be read"),
])
def test_a_missing_header_source_is_one_line_error(argv: list[str], message: str) -> None:
    with pytest.raises(BenchError, match=re.escape(message)):
        _cli_url_options(argv)
