"""`bench run --target url` against servers servebench did not start for the run: `bench serve` on a chosen
port (with an API key the server demands), and a Docker container started apart from the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import requests
from docker_daemon import require_docker

from bench.config import load_runtime
from bench.models.registry import LocalModel
from bench.ports import free_port
from bench.results.store import load_results

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
SECRET = "s3cret-7f1c2a"
pytestmark = pytest.mark.integration


def brief_scenario(folder: Path) -> Path:
    path = folder / "brief.yaml"
    path.write_text(json.dumps({"name": "brief", "loop": "open", "arrival": "poisson", "rate": 50, "warmup_s": 1,
                                "duration_s": 4, "slo": {"percentile": "p99", "ms": 200}, "min_requests": 50}))
    return path


@pytest.fixture
def served(tmp_path: Path, models: dict[str, LocalModel]) -> Iterator[str]:
    """`bench serve` of the test double on a free port, demanding an API key; its base URL."""
    port = free_port()
    server = subprocess.Popen([*BENCH, "serve", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "SERVEBENCH_TEST_FAKE_REQUIRE_HEADER": f"X-Api-Key: {SECRET}"},
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail("bench serve did not come up")
        yield base
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)


def run_url(tmp_path: Path, url: str, *extra: str, out: str = "run") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, "run", "--target", "url", "--url", url, "--model", "iris-logreg",
                           "--scenario", str(brief_scenario(tmp_path)), "--length", "full", "--no-mlflow",
                           "--out", str(tmp_path / out), *extra], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})


def test_a_served_endpoint_measured_by_url_with_its_api_key(tmp_path: Path, served: str) -> None:
    result = run_url(tmp_path, f"{served}/predict", "--protocol", "kserve-v1", "--name", "fake-external",
                     "--header", f"X-Api-Key: {SECRET}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(tmp_path / "run")
    (cell,) = results.cells
    assert results.target == "url" and cell.target == "url" and cell.runtime == "fake-external"
    assert cell.validity.valid, cell.validity.reasons
    assert cell.parity.ok and cell.counts.scheduled == cell.counts.completed > 150
    assert cell.server.cpu_percent_mean is None and cell.server.rss_mb_max is None  # not visible: unknown
    record = results.runtime("fake-external")
    assert record.provisioning is not None and record.provisioning.kind == "external"
    assert record.protocol == "kserve-v1" and "external endpoint" in (record.description or "")
    leaked = [str(path) for path in (tmp_path / "run").rglob("*") if path.is_file()
              and SECRET.encode() in path.read_bytes()]
    assert not leaked, f"the API key was written to {leaked}"
    assert SECRET not in result.stdout + result.stderr


def test_without_the_key_the_parity_check_fails_and_nothing_is_measured(tmp_path: Path, served: str) -> None:
    result = run_url(tmp_path, f"{served}/predict", "--protocol", "kserve-v1")
    assert result.returncode == 1, result.stderr[-3000:]
    (cell,) = load_results(tmp_path / "run").cells
    assert not cell.validity.valid and not cell.parity.ok
    assert "HTTP 401" in (cell.validity.error or ""), cell.validity
    assert cell.runtime == f"url-127-0-0-1-{served.rsplit(':', 1)[1]}"  # named after the host and port


def test_an_endpoint_that_does_not_answer_fails_its_cell_in_one_line(tmp_path: Path,
                                                                      models: dict[str, LocalModel]) -> None:
    result = run_url(tmp_path, f"http://127.0.0.1:{free_port()}/predict", "--protocol", "kserve-v1")
    assert result.returncode == 1
    (cell,) = load_results(tmp_path / "run").cells
    assert "does not answer" in (cell.validity.error or ""), cell.validity
    assert "Traceback" not in result.stderr


@pytest.mark.docker
def test_a_container_started_apart_from_the_run_measured_by_url(tmp_path: Path,
                                                                models: dict[str, LocalModel]) -> None:
    """The FastAPI image in a container this test starts (not the run): the run finds, checks and measures
    it by its URL alone, and leaves it running for its owner to stop."""
    require_docker()
    from bench.targets.docker import DockerTarget

    target = DockerTarget(base_image=os.environ.get("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm"),
                          offline=bool(os.environ.get("SERVEBENCH_DOCKER_OFFLINE")), memory="2g")
    runtime = load_runtime("fastapi")
    target.provision(runtime, tmp_path / "logs", lambda _line: None)
    with target.deploy(runtime, models["iris-logreg"], tmp_path / "logs") as deployment:
        endpoint = deployment.endpoint
        result = run_url(tmp_path, endpoint.predict_url, "--protocol", endpoint.protocol, "--name", "in-a-container")
        assert result.returncode == 0, result.stderr[-3000:]
        (cell,) = load_results(tmp_path / "run").cells
        assert cell.validity.valid and cell.parity.ok, cell.validity.reasons
        assert cell.runtime == "in-a-container" and cell.counts.completed > 150
        assert deployment.alive(), "the run stopped a server it did not start"


class _Recorder(BaseHTTPRequestHandler):
    """A server the harness does not speak to by protocol: it keeps every body it is sent."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the generator's connections expect
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_teams_own_bodies_are_sent_exactly_as_written(tmp_path: Path) -> None:
    """`--target url --data bodies.jsonl`: the endpoint receives exactly the file's bodies, byte for byte (the
    parity step's few, then the load's, in turn), and results record them as not compared."""
    lines = [json.dumps({"text": f"ticket {i}", "priority": i % 3, "tags": ["a", "b"][: i % 3]},
                        separators=(",", ":")).encode() for i in range(5)]
    (tmp_path / "bodies.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run([*BENCH, "run", "--target", "url", "--url", f"http://127.0.0.1:{server.server_port}/"
                                 "score", "--protocol", "kserve-v1", "--name", "ticket-router", "--data",
                                 str(tmp_path / "bodies.jsonl"), "--scenario", str(brief_scenario(tmp_path)),
                                 "--length", "smoke", "--out", str(tmp_path / "run"), "--no-mlflow"],
                                capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-2000:]
    results = load_results(tmp_path / "run")
    [cell] = results.cells
    assert cell.validity.valid and cell.parity.ok is None  # answered, but nothing to compare them with
    assert set(_Recorder.received) == set(lines)  # every body, and nothing else, exactly as written
    parity_step = len(lines)  # the first few bodies (at most 8) are sent once before the load
    assert cell.samples_file is not None
    samples = pd.read_parquet(tmp_path / "run" / cell.samples_file)  # warm-up and window: every request sent
    assert len(_Recorder.received) == parity_step + int(samples["sent"].notna().sum()) > parity_step + 100
    assert _Recorder.received[:parity_step] == lines
    record = results.models[cell.model]
    assert record.source == "bodies.jsonl" and record.data is not None and "5 bodies" in record.data
