"""`bench capacity` against a real server whose knee is known: the test-double runtime serving one request
at a time in 5 ms (a single-server queue), so the highest Poisson rate within p99 <= 25 ms follows from
queueing theory (tests/queueing.py: the queue simulated exactly, plus the server's delay outside the queue,
network and HTTP, as the lowest-rate probe measured it); and Ctrl-C through a real terminal (tmux) in the
middle of a search."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from queueing import true_knee

from bench.models.registry import LocalModel
from bench.results.store import load_results

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
pytestmark = pytest.mark.integration
SERVICE_MS, SLO_MS = 5.0, 25.0  # capacity 200 req/s; the knee near 110 (about 1,600 requests a probe)


def probe_scenario(folder: Path, duration_s: float = 15) -> Path:
    path = folder / "probe.yaml"
    path.write_text(json.dumps({"name": "probe", "loop": "open", "arrival": "poisson", "rate": 10,
                                "warmup_s": 1, "duration_s": duration_s, "min_requests": 50}))
    return path


def capacity_command(folder: Path, out: Path, *extra: str) -> list[str]:
    return [*BENCH, "capacity", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg",
            "--slo", f"p99:{SLO_MS:g}ms", "--scenario", str(probe_scenario(folder)), "--length", "full",
            "--start-rate", "40", "--resolution", "8", "--repeats", "3", "--no-mlflow", "--out", str(out), *extra]


def test_the_search_finds_the_knee_queueing_theory_predicts(tmp_path: Path, models: dict[str, LocalModel]) -> None:
    out, listing = tmp_path / "run", tmp_path / "capacity.json"
    result = subprocess.run(capacity_command(tmp_path, out, "--json", str(listing)), capture_output=True, text=True,
                            timeout=900, env={**os.environ, "SERVEBENCH_TEST_FAKE_MODE": f"serial:{SERVICE_MS:g}",
                                              "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(out)
    first = pd.read_parquet(out / str(results.cells[0].samples_file))  # 40 req/s: hardly any request waits
    overhead_ms = np.clip(first.loc[first["in_window"], "latency_ms"].to_numpy() - SERVICE_MS, 0.0, None)
    truth = true_knee(SERVICE_MS, SLO_MS, overhead_ms)
    (entry,) = json.loads(listing.read_text())
    assert entry["runtime"] == "fake" and entry["slo"] == {"percentile": "p99", "ms": SLO_MS}
    # The prediction is optimistic: it takes the server's path delay (HTTP, threads, outside the serial queue)
    # from the 40 req/s probe, and on the server's one CPU that delay grows with the rate. So the band is
    # asymmetric: on 2026-12-01, on a quiet machine, the search found 0.82 and 0.89 of the prediction in two
    # runs and within 10% of it in two others (stop 19: 102 against 102.3); a search stuck low (40 req/s: 0.4)
    # or past the knee still fails.
    assert 0.75 <= entry["capacity_rps"] / truth <= 1.10, (entry, truth)
    assert entry["ci_low"] <= entry["capacity_rps"] and entry["limited_by"] is None
    assert 0 < float(np.median(overhead_ms)) < 5, np.median(overhead_ms)
    assert [cell.label for cell in results.cells] == entry["probes"] and len(results.cells) >= 5
    assert results.capacity[0].capacity_rps == entry["capacity_rps"]
    assert all((out / str(cell.samples_file)).is_file() for cell in results.cells if cell.counts.requests)
    summary = (out / "summary.md").read_text()
    assert "### Capacity" in summary and f"{entry['capacity_rps']:,.1f}" in summary
    assert 'id="capacity"' in (out / "report.html").read_text()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_ctrl_c_in_a_terminal_keeps_the_probes_and_stops_everything(tmp_path: Path,
                                                                    models: dict[str, LocalModel]) -> None:
    out, code_file, session = tmp_path / "run", tmp_path / "exit-code", f"servebench-test-{os.getpid()}"
    command = " ".join(capacity_command(tmp_path, out))
    shell = f"cd {Path.cwd()} && SERVEBENCH_TEST_FAKE_MODE=serial:{SERVICE_MS:g} {command}; echo $? > {code_file}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", shell], check=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the first probe is on disk: interrupt the second one mid-load
            if (out / "results.json").is_file() and len(load_results(out).cells) >= 1:
                break
            time.sleep(0.5)
        time.sleep(4)
        harness = [p for p in psutil.process_iter(["cmdline"]) if "capacity" in (p.info["cmdline"] or [])
                   and str(out) in (p.info["cmdline"] or [])]
        assert harness, "bench capacity is not running in the terminal"
        descendants = harness[0].children(recursive=True)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        pressed = time.monotonic()
        while not code_file.is_file() and time.monotonic() < pressed + 60:
            time.sleep(0.05)
        assert code_file.read_text().strip() == "130", (out / "run.log").read_text()[-3000:]
        assert time.monotonic() - pressed < 3.0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)
    results = load_results(out)
    assert results.status == "interrupted" and len(results.cells) >= 2
    assert results.cells[0].validity.valid
    assert any("interrupted" in reason for reason in results.cells[-1].validity.reasons)
    _, alive = psutil.wait_procs([p for p in descendants if p.is_running()], timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "processes outlived Ctrl-C"
