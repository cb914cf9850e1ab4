"""`bench calibrate` end to end, briefly: every measurement produces figures (targets are checked by
running the benchmark itself, never by a timed test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure.calibrate import CalibrationReport

pytestmark = pytest.mark.integration


def test_calibrate_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "calibrate.json"
    result = subprocess.run([sys.executable, "-m", "bench.cli", "calibrate", "--duration", "2", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = CalibrationReport.from_json(out.read_text())  # the file is the typed report, field for field
    # a figure that is None (nothing measured) fails every comparison below, as `or 0` makes it 0
    assert report.ceiling.servebench_rps > 100 and (report.ceiling.plain_locust_rps or 0) > 100
    for _loop, latency in report.accuracy.loops():
        assert 5.0 < (latency.p50 or 0) <= (latency.p99 or 0) < 100  # the server waits 5 ms per request
    assert (report.accuracy.server_side.p50 or 0) >= 5.0
    # the stall is visible to the open loop (true p99 of a 200 ms stall every 2 s is about 180 ms)
    assert (report.stall.truth.p99 or 0) > 100 and (report.stall.open.p99 or 0) > 100
    assert 0 < (report.stall.closed.p99 or 0) < (report.stall.open.p99 or 0)
