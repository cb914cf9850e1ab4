"""The local target against a stdlib test-double runtime: readiness, CPU pinning, failure reporting and
cleanup of the whole process tree. Real processes, no runtime frameworks (a venv with no packages)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from bench.config import ModelSpec, load_runtime
from bench.errors import DeployError
from bench.measure.check import check_pair
from bench.models.registry import LocalModel
from bench.targets.launch import CpuPlan
from bench.targets.local import LocalTarget

FAKE_RUNTIME = Path(__file__).parent / "data" / "fake-runtime"
SPEC = ModelSpec(name="fake-model", framework="sklearn", description="test", parity_atol=1e-9, dataset="iris",
                 n_features=4, n_classes=4)


@pytest.fixture(autouse=True)
def shared_env_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # one cache for the session, so the empty venv of the fake runtime is built once
    monkeypatch.setenv("SERVEBENCH_ENV_CACHE", str(tmp_path_factory.getbasetemp() / "envs"))


def fake_model(tmp_path: Path, outputs_equal_inputs: bool = True) -> LocalModel:
    inputs = np.arange(16, dtype=np.float64).reshape(4, 4) / 7
    outputs = inputs.copy() if outputs_equal_inputs else inputs + 0.5
    (tmp_path / "model").mkdir(exist_ok=True)
    return LocalModel(SPEC, "1", "fp", tmp_path / "model", inputs, outputs)


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def plan() -> CpuPlan:
    cpus = sorted(os.sched_getaffinity(0))
    return CpuPlan((cpus[-1],), tuple(cpus[:-1]) or (cpus[0],))


def test_deploy_pins_cpus_sets_threads_and_stops(tmp_path: Path, no_new_servers: None) -> None:
    target = LocalTarget(plan())
    deployment = target.deploy(load_runtime(str(FAKE_RUNTIME)), fake_model(tmp_path), tmp_path / "logs")
    with deployment:
        info = requests.get(deployment.endpoint.readiness_url, timeout=5).json()
        assert info["affinity"] == list(plan().server)
        assert info["omp"] == str(len(plan().server))
        assert deployment.startup_s > 0
        assert deployment.rss_mb() > 1
        assert deployment.fairness["server_cpus"] == list(plan().server)
        url = deployment.endpoint.base_url
    assert not port_open(url)
    assert not psutil.pid_exists(info["pid"]) or psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE


def test_crash_at_start_fails_fast_with_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 no_new_servers: None) -> None:
    monkeypatch.setenv("SERVEBENCH_TEST_FAKE_MODE", "crash")
    started = time.monotonic()
    with pytest.raises(DeployError) as caught:
        LocalTarget(plan()).deploy(load_runtime(str(FAKE_RUNTIME)), fake_model(tmp_path), tmp_path / "logs")
    assert "exit code 3" in caught.value.message
    assert "failing on purpose" in caught.value.log_tail
    assert time.monotonic() - started < 2.5, "a crash must not wait for the readiness timeout"


def test_never_ready_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_new_servers: None) -> None:
    monkeypatch.setenv("SERVEBENCH_TEST_FAKE_MODE", "never_ready")
    with pytest.raises(DeployError, match=r"not ready after 3 s \(HTTP 503"):
        LocalTarget(plan()).deploy(load_runtime(str(FAKE_RUNTIME)), fake_model(tmp_path), tmp_path / "logs")


def test_stop_kills_children_that_ignore_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 no_new_servers: None) -> None:
    monkeypatch.setenv("SERVEBENCH_TEST_FAKE_MODE", "fork")
    deployment = LocalTarget(plan()).deploy(load_runtime(str(FAKE_RUNTIME)), fake_model(tmp_path), tmp_path)
    with deployment:
        child_pid = int(deployment.log_path.read_text().split("child ")[1].split()[0])
        assert psutil.pid_exists(child_pid)
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


def test_check_pair_statuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_new_servers: None) -> None:
    runtime = load_runtime(str(FAKE_RUNTIME))
    target = LocalTarget(plan())
    monkeypatch.setattr("bench.measure.check.resolve", lambda _spec: fake_model(tmp_path, outputs_equal_inputs=True))
    ok = check_pair(target, runtime, SPEC, tmp_path)
    assert (ok.status, ok.ok, ok.max_abs_diff) == ("ok", True, 0.0)
    assert ok.startup_s is not None and ok.startup_s > 0

    monkeypatch.setattr("bench.measure.check.resolve", lambda _spec: fake_model(tmp_path, outputs_equal_inputs=False))
    mismatch = check_pair(target, runtime, SPEC, tmp_path)
    assert (mismatch.status, mismatch.ok) == ("mismatch", False)
    assert mismatch.max_abs_diff == pytest.approx(0.5)

    monkeypatch.setenv("SERVEBENCH_TEST_FAKE_MODE", "die_on_predict")
    died = check_pair(target, runtime, SPEC, tmp_path)
    assert (died.status, died.ok) == ("failed", False)
    assert died.error is not None and "died" in died.error

    monkeypatch.setenv("SERVEBENCH_TEST_FAKE_MODE", "crash")
    crashed = check_pair(target, runtime, SPEC, tmp_path)
    assert crashed.status == "failed" and crashed.error is not None and "exit code 3" in crashed.error


def test_server_dies_with_a_killed_harness(tmp_path: Path) -> None:
    """SIGKILL gives the harness no chance to clean up: the parent-death signal must stop the server."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        import numpy as np
        from bench.config import ModelSpec, load_runtime
        from bench.models.registry import LocalModel
        from bench.targets.local import LocalTarget
        spec = ModelSpec(name="m", framework="sklearn", description="t", parity_atol=1e-9, dataset="iris",
                         n_features=4, n_classes=4)
        model = LocalModel(spec, "1", "fp", Path({str(tmp_path)!r}), np.zeros((1, 4)), np.zeros((1, 4)))
        d = LocalTarget().deploy(load_runtime({str(FAKE_RUNTIME)!r}), model, Path({str(tmp_path)!r}))
        print(json.dumps({{"pid": d.process.pid, "url": d.endpoint.base_url}}), flush=True)
        time.sleep(600)
    """)
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        assert harness.stdout is not None
        server = json.loads(harness.stdout.readline())
        assert port_open(server["url"])
        harness.send_signal(signal.SIGKILL)
        harness.wait(timeout=10)
        deadline = time.monotonic() + 10
        while port_open(server["url"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_open(server["url"]), "server outlived a SIGKILLed harness"
    finally:
        harness.kill()
        harness.wait()


def test_a_server_inherits_only_the_allow_listed_environment(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's environment holds credentials a server never needs: a local server (and the model timer)
    gets PATH, HOME, locale and the owner mark from it, the rest from runtime.yaml."""
    from bench.processes import OWNER_ENV
    from bench.provision.envs import RuntimeEnv

    for name, value in {"MLFLOW_TRACKING_URI": "https://u:tracking-secret@mlflow", "AWS_SECRET_ACCESS_KEY": "aws-sec",
                        "SERVEBENCH_WORKER_TOKEN": "worker-secret", "PYTHONPATH": "/harness", "LC_ALL": "C.UTF-8",
                        "SERVEBENCH_TEST_DELAY_MS": "5", OWNER_ENV: "123:456.00"}.items():
        monkeypatch.setenv(name, value)
    runtime_env = RuntimeEnv("fastapi", tmp_path / "venv", "k", 0.0, 0.0, {})
    env = LocalTarget().environment(runtime_env, {"MODEL_DIR": "/models/m"})
    assert not {"MLFLOW_TRACKING_URI", "AWS_SECRET_ACCESS_KEY", "SERVEBENCH_WORKER_TOKEN", "PYTHONPATH"} & set(env)
    assert "secret" not in " ".join(env.values())
    assert env["PATH"].startswith(f"{tmp_path / 'venv' / 'bin'}:") and env["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert (env["LC_ALL"], env["SERVEBENCH_TEST_DELAY_MS"], env[OWNER_ENV]) == ("C.UTF-8", "5", "123:456.00")
    assert env["MODEL_DIR"] == "/models/m" and env["OMP_NUM_THREADS"] == "1"
