"""A recorded arrival file replayed against the test double: each measured window holds the trace's own
arrivals, from its first request, at the time scale asked for, looped, every one of them counted."""

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
from bench.results.store import load_results

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
pytestmark = pytest.mark.integration
DURATION_S = 3.0


def test_a_recorded_trace_is_replayed_at_each_time_scale(tmp_path: Path, models: dict[str, LocalModel]) -> None:
    gaps = np.random.default_rng(5).gamma(1 / 4, 4 / 30, size=50)  # bursty: CV 2, 30 req/s
    times_ms = np.round(1.7e12 + np.cumsum(gaps) * 1000, 3)  # epoch milliseconds, as an access log has them
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp_ms,path\n" + "".join(f"{t:.3f},/predict\n" for t in times_ms))
    scenario = tmp_path / "replay.yaml"
    scenario.write_text(json.dumps({"name": "replay", "loop": "open", "rate": 1, "warmup_s": 1,
                                    "duration_s": DURATION_S, "min_requests": 10,
                                    "slo": {"percentile": "p99", "ms": 2000}}))
    out = tmp_path / "run"
    result = subprocess.run(
        [*BENCH, "run", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--scenario", str(scenario),
         "--length", "smoke", "--arrivals", str(trace), "--time-scale", "1,2", "--no-mlflow", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]

    offsets = (times_ms - times_ms[0]) / 1000.0
    period = offsets[-1] * len(offsets) / (len(offsets) - 1)  # the span plus the mean gap
    looped = np.concatenate([offsets + loop * period for loop in range(8)])
    cells = load_results(out).cells
    assert [cell.label for cell in cells] == ["scale=1", "scale=2"]
    for cell, scale in zip(cells, (1.0, 2.0), strict=True):
        assert cell.load.duration_s == DURATION_S  # the smoke profile's shortest window
        expected = looped[looped < DURATION_S * scale] / scale
        assert cell.load.arrival == "trace" and cell.load.trace_sha256 is not None
        assert cell.counts.scheduled == len(expected) == cell.counts.completed
        samples = pd.read_parquet(out / str(cell.samples_file))
        scheduled = np.sort(samples.loc[samples["in_window"], "scheduled"].to_numpy())
        np.testing.assert_allclose(scheduled - scheduled[0], expected, rtol=0, atol=1e-4)
