"""A SIGKILLed harness runs no cleanup: a server's child that ignores SIGTERM outlives it (PR_SET_PDEATHSIG
reaches the server alone). The next command that uses a target removes it and says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.models.registry import LocalModel

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
pytestmark = pytest.mark.integration


def test_a_sigkilled_serve_leaves_a_process_the_next_command_removes_and_names(
        tmp_path: Path, models: dict[str, LocalModel]) -> None:
    log = tmp_path / "serve.log"
    env = {**os.environ, "SERVEBENCH_TEST_FAKE_MODE": "fork", "COLUMNS": "250"}
    with log.open("w") as sink:
        harness = subprocess.Popen([*BENCH, "serve", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg"],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env)
    child: psutil.Process | None = None
    try:
        deadline = time.monotonic() + 120
        while child is None and time.monotonic() < deadline and harness.poll() is None:
            time.sleep(0.2)
            servers = psutil.Process(harness.pid).children()
            grandchildren = [process for server in servers for process in server.children()]
            child = grandchildren[0] if grandchildren else None
        assert child is not None, log.read_text()[-2000:]
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(timeout=30)
    time.sleep(1.0)  # the server got its parent-death SIGTERM; the child ignores it
    assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    try:
        result = subprocess.run([*BENCH, "check", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg"],
                                capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        said = " ".join((result.stdout + result.stderr).split())
        assert f"removed process {child.pid} (" in said and f"its harness, pid {harness.pid}, no longer runs" in said
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if child.is_running():
            child.kill()
