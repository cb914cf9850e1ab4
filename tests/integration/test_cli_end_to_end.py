"""The bench command as a user runs it: a subprocess, real servers, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from terminal import as_from_a_terminal

from bench.models.registry import LocalModel

pytestmark = pytest.mark.integration

BENCH = [sys.executable, "-m", "bench.cli"]
FAKE_RUNTIME = Path(__file__).parents[1] / "data" / "fake-runtime"


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout_s: float = 120) -> re.Match[str]:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; got: {''.join(seen)[-2000:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_signal(signum: int, models: dict[str, LocalModel], runtime_envs: None) -> None:
    serve = subprocess.Popen([*BENCH, "serve", "--runtime", "bentoml", "--model", "digits-cnn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "COLUMNS": "400"}, preexec_fn=as_from_a_terminal)
    try:
        url = wait_for_line(serve, r"POST (http://127\.0\.0\.1:\d+/predict)").group(1)
        server_pids = [p.pid for p in psutil.Process(serve.pid).children(recursive=True)]
        assert server_pids
        model = models["digits-cnn"]
        answer = requests.post(url, json={"instances": model.golden_inputs[:2].tolist()}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        serve.send_signal(signum)
        assert serve.wait(timeout=30) == 130
    finally:
        serve.kill()
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in server_pids if psutil.pid_exists(pid)], timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "server processes outlived bench serve"
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


def test_check_goes_on_after_a_failed_runtime_and_exits_1(tmp_path: Path, models: dict[str, LocalModel],
                                                         runtime_envs: None) -> None:
    out = tmp_path / "out.json"
    result = subprocess.run(
        [*BENCH, "check", "--runtime", f"{FAKE_RUNTIME},fastapi", "--model", "iris-logreg", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "SERVEBENCH_TEST_FAKE_MODE": "crash", "COLUMNS": "200"},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    rows = {row["runtime"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"fake", "fastapi"}
    assert rows["fake"]["ok"] is False and "exit code 3" in rows["fake"]["error"]
    assert rows["fastapi"]["ok"] is True and rows["fastapi"]["startup_s"] > 0
    for row in rows.values():
        assert {"runtime", "model", "ok", "max_abs_diff", "startup_s", "error"} <= set(row)
