"""A credential given the way users give it reaches the server and is written, printed or passed on nowhere:
`--url` with user:password, `--metrics-url` with user:password and a token query, `--header-env`, a refused
`--worker-url`, and an MLflow tracking server URI with user:password, against `bench serve` of the test double
(which demands the Basic credential) and a real `mlflow server`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from bench.models.registry import LocalModel
from bench.ports import free_port
from bench.results.store import load_results

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
USER, PASSWORD = "alice", "pw-5d1e9b"  # in --url
METRICS_PASSWORD, METRICS_TOKEN = "mpw-0a7c3f", "mtok-6b2e84"  # in --metrics-url
HEADER_KEY = "hdr-93c1d7"  # through --header-env
TRACKING_PASSWORD = "trk-4f8a2c"  # in MLFLOW_TRACKING_URI
SECRETS = (PASSWORD, METRICS_PASSWORD, METRICS_TOKEN, HEADER_KEY, TRACKING_PASSWORD,
           base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
pytestmark = pytest.mark.integration


def _wait(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited"
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:  # refused, or accepted but not answering yet (a cold mlflow server)
            time.sleep(0.3)
    pytest.fail(f"{what} did not come up")


@pytest.fixture
def servers(tmp_path: Path, models: dict[str, LocalModel]) -> Iterator[tuple[str, str]]:
    """The test double demanding the Basic credential, and an MLflow tracking server: their base URLs."""
    port, tracking_port = free_port(), free_port()
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    started = [
        subprocess.Popen([*BENCH, "serve", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--port",
                          str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, "SERVEBENCH_TEST_FAKE_REQUIRE_HEADER": f"Authorization: Basic {basic}"}),
        subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(tracking_port),
                          "--backend-store-uri", f"sqlite:///{tmp_path / 'tracking.db'}",
                          "--artifacts-destination", str(tmp_path / "tracking-artifacts"), "--workers", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        _wait(f"http://127.0.0.1:{port}/ready", started[0], "bench serve")
        _wait(f"http://127.0.0.1:{tracking_port}/health", started[1], "mlflow server")
        yield f"127.0.0.1:{port}", f"127.0.0.1:{tracking_port}"
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=30)


def _argv_of_everything_but(typed: int) -> str:
    """Every process's command line but the one the user typed (its credentials are the user's own doing)."""
    return "\n".join(" ".join(process.info["cmdline"] or []) for process in psutil.process_iter(["pid", "cmdline"])
                     if process.info["pid"] != typed)


def test_no_credential_is_written_printed_or_passed_on(tmp_path: Path, servers: tuple[str, str]) -> None:
    server, tracking = servers
    env = {**os.environ, "COLUMNS": "200", "GATEWAY_KEY": f"X-Api-Key: {HEADER_KEY}",
           "MLFLOW_TRACKING_URI": f"http://{USER}:{TRACKING_PASSWORD}@{tracking}"}
    scenario = tmp_path / "s.yaml"
    scenario.write_text(json.dumps({"name": "s", "loop": "open", "arrival": "poisson", "rate": 50, "warmup_s": 1,
                                    "duration_s": 4, "slo": {"percentile": "p99", "ms": 200}, "min_requests": 50}))
    out = tmp_path / "run"
    run = subprocess.Popen(
        [*BENCH, "run", "--target", "url", "--url", f"http://{USER}:{PASSWORD}@{server}/predict", "--protocol",
         "kserve-v1", "--name", "gateway", "--model", "iris-logreg", "--scenario", str(scenario), "--length", "full",
         "--header-env", "GATEWAY_KEY",
         "--metrics-url", f"http://m:{METRICS_PASSWORD}@{server}/metrics?token={METRICS_TOKEN}",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen_argv = []
    while run.poll() is None:  # what every process on the host is running with, while the load runs
        seen_argv.append(_argv_of_everything_but(run.pid))
        time.sleep(0.5)
    stdout, stderr = run.communicate()
    assert run.returncode == 0, stderr[-3000:]
    (cell,) = load_results(out).cells
    assert cell.validity.valid and cell.counts.errors == 0, cell.validity  # the Basic credential got through
    written = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert any(path.name == "plan.json" for path in written) and any(path.suffix == ".log" for path in written)
    mlflow_files = {path: path.read_bytes() for path in (tmp_path / "tracking-artifacts").rglob("*") if path.is_file()}
    assert mlflow_files, "the run was not logged to the MLflow server"
    tracking_db = (tmp_path / "tracking.db").read_bytes()  # params and tags live in the store
    for secret in SECRETS:
        for path, data in {**written, **mlflow_files}.items():
            assert secret.encode() not in data, f"{secret} in {path}"
        assert secret.encode() not in tracking_db, f"{secret} in the MLflow store"
        assert secret not in stdout + stderr, f"{secret} printed"
        assert not [argv for argv in seen_argv if secret in argv], f"{secret} in another process's argv"
    refused = subprocess.run(
        [*BENCH, "run", "--target", "url", "--url", f"http://{server}/predict", "--protocol", "kserve-v1",
         "--model", "iris-logreg", "--scenario", str(scenario), "--expect-workers", "1",
         "--worker-url", f"http://{USER}:{PASSWORD}@10.0.0.5:8080", "--no-mlflow", "--out", str(tmp_path / "w")],
        capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "would travel to every worker" in refused.stderr
    assert PASSWORD not in refused.stdout + refused.stderr


def _environments_of_everything_but(harness: int) -> str:
    """Every process's environment but the harness's own and its load generator's (a server's, a container's
    processes included: they are this kernel's processes)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] == harness or "locust" in " ".join(process.info["cmdline"] or []):
            continue
        try:
            found.append(f"[{process.info['pid']} {' '.join(process.info['cmdline'] or [])[:200]}] "
                         + " ".join(f"{key}={value}" for key, value in process.environ().items()))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return "\n".join(found)


@pytest.mark.parametrize("target", ["local", "docker", "kserve"])
def test_a_tracking_credential_reaches_no_server_file_or_manifest(target: str, tmp_path: Path,
                                                                servers: tuple[str, str]) -> None:
    """A team's model from a tracking server whose URI carries a credential, on each target that deploys
    (kserve: its dry run, whose manifests and commands are what a real run applies): the model is fetched,
    and the credential reaches no server's environment, no file, no manifest, no output and no argv."""
    if target == "docker":
        from docker_daemon import require_docker

        require_docker()
    import mlflow
    import team_models

    _, tracking = servers
    tracking_uri = f"http://{USER}:{TRACKING_PASSWORD}@{tracking}"
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)  # MLflow puts it in this process's environment too
    mlflow.set_registry_uri(tracking_uri)
    try:
        registered = team_models.log_tensor_mlp("cred-mlp")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "200", "MLFLOW_TRACKING_URI": tracking_uri,
           "SERVEBENCH_BASE_IMAGE": os.environ.get("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm"),
           "SERVEBENCH_DOCKER_OFFLINE": "1"}
    scenario = Path(__file__).parents[1] / "data" / "brief.yaml"
    argv = [*BENCH, "run", "--target", target, "--runtime", "fastapi", "--model", registered.uri, "--scenario",
            str(scenario), "--length", "smoke", "--out", str(out), *(["--dry-run"] if target == "kserve" else [])]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    while run.poll() is None:
        seen.append(_argv_of_everything_but(run.pid) + "\n" + _environments_of_everything_but(run.pid))
        time.sleep(0.5)
    stdout, stderr = run.communicate()
    assert run.returncode == 0, stderr[-3000:]
    written = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    if target == "kserve":
        assert any(path.suffix == ".yaml" for path in written) and (out / "commands.sh").exists()
    else:
        (cell,) = load_results(out).cells
        assert cell.validity.valid, cell.validity.reasons  # the model came through the credentialed store
    assert seen, "the run ended before anything was looked at"
    for path, data in written.items():
        assert TRACKING_PASSWORD.encode() not in data, f"the credential in {path}"
    assert TRACKING_PASSWORD not in stdout + stderr
    leaked = [line.split("]")[0] for snapshot in seen for line in snapshot.splitlines() if TRACKING_PASSWORD in line]
    assert not leaked, f"the credential in another process's argv or environment: {sorted(set(leaked))}"
