"""`bench calibrate` end to end, briefly: every measurement produces figures (targets are checked by
running the benchmark itself, never by a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_calibrate_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "calibrate.json"
    result = subprocess.run([sys.executable, "-m", "bench.cli", "calibrate", "--duration", "2", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ceiling"]["servebench_rps"] > 100 and report["ceiling"]["plain_locust_rps"] > 100
    for loop in ("open", "closed"):
        latency = report["accuracy"][loop]
        assert 5.0 < latency["p50"] <= latency["p99"] < 100  # the server waits 5 ms per request
    assert report["accuracy"]["server_side"]["p50"] >= 5.0
    # the stall is visible to the open loop (true p99 of a 200 ms stall every 2 s is about 180 ms)
    assert report["stall"]["truth"]["p99"] > 100 and report["stall"]["open"]["p99"] > 100
    assert report["stall"]["closed"]["p99"] < report["stall"]["open"]["p99"]
