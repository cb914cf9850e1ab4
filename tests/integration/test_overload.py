"""Overload, for real: the test double serving one request at a time in 20 ms (50 req/s) while the schedule
asks for 150 req/s through 16 connections. Every scheduled request must be accounted for (sent or dropped),
the percentiles must include the queue the server built, and the verdict must blame the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.models.registry import LocalModel
from bench.results.samples import DROPPED
from bench.results.store import load_results

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
pytestmark = pytest.mark.integration
SERVICE_S, RATE, DURATION_S, WARMUP_S = 0.020, 150, 10, 1


def test_three_times_capacity_counts_every_scheduled_request_and_blames_the_server(
        tmp_path: Path, models: dict[str, LocalModel]) -> None:
    scenario = tmp_path / "overload.yaml"
    scenario.write_text(json.dumps({"name": "overload", "loop": "open", "arrival": "constant", "rate": RATE,
                                    "warmup_s": WARMUP_S, "duration_s": DURATION_S, "max_in_flight": 16,
                                    "request_timeout_s": 3, "min_requests": 50}))
    out = tmp_path / "run"
    result = subprocess.run(
        [*BENCH, "run", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--scenario", str(scenario),
         "--length", "full", "--no-mlflow", "--out", str(out)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "SERVEBENCH_TEST_FAKE_MODE": f"serial:{SERVICE_S * 1000:g}", "COLUMNS": "200"})
    assert result.returncode == 1, result.stderr[-3000:]  # no valid cell
    (cell,) = load_results(out).cells
    counts = cell.counts
    assert counts.scheduled == RATE * DURATION_S  # a constant schedule: exactly 1,500 slots in the window
    assert counts.scheduled == counts.sent + (counts.dropped or 0)
    assert (counts.dropped or 0) > 0 and (counts.queued or 0) > 0
    assert counts.sent == counts.completed + counts.failed
    assert cell.latency_includes == "all scheduled"

    samples = pd.read_parquet(out / str(cell.samples_file))
    inside = samples.loc[samples["in_window"]]
    assert len(inside) == counts.scheduled and int((inside["status"] == DROPPED).sum()) == counts.dropped

    # The true delay of the k-th scheduled request (from the first): a serial server completes it no sooner
    # than (k + 1) x 20 ms after the start; the run's end censors it (a dropped request is recorded there).
    scheduled = np.sort(samples["scheduled"].to_numpy())
    ended = samples.loc[samples["status"] == DROPPED]
    end = float((ended["scheduled"] + ended["latency_ms"] / 1000).max())
    lower_bound = np.minimum(scheduled[0] + (np.arange(len(scheduled)) + 1) * SERVICE_S, end) - scheduled
    window = (scheduled >= float(inside["scheduled"].min())) & (scheduled <= float(inside["scheduled"].max()))
    true_p99_ms = float(np.percentile(lower_bound[window], 99)) * 1000
    assert cell.latency.p99 is not None and cell.latency.p99 >= 0.97 * true_p99_ms, (cell.latency, true_p99_ms)
    # success-only figures stay beside them (here not lower: what succeeded was sent late, after a long wait)
    assert cell.latency_ok.p99 is not None and cell.latency_ok.p99 > 1000 * SERVICE_S

    assert cell.rates.throughput_rps == pytest.approx(1 / SERVICE_S, rel=0.25)  # the server's own capacity
    assert not cell.validity.valid
    assert any(reason.startswith("the server could not keep up") for reason in cell.validity.reasons), cell.validity
    assert not any("generator" in reason for reason in cell.validity.reasons), cell.validity
