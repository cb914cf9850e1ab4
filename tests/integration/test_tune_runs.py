"""`bench tune` against the test double whose better knob value is known: it serves one request at a time
in `service_ms` milliseconds (12 by default, 4 the other value), so 4 ms must win, by about three times
the capacity; its `workers` knob spends CPUs, and workers=4 does not fit one server CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.models.registry import LocalModel
from bench.results.store import load_results

TUNABLE = Path(__file__).resolve().parents[1] / "data" / "fake-tunable"
pytestmark = pytest.mark.integration


def test_tune_picks_the_knob_value_known_to_be_better(tmp_path: Path, models: dict[str, LocalModel]) -> None:
    out, listing = tmp_path / "run", tmp_path / "tuning.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "tune", "--runtime", str(TUNABLE), "--model", "iris-logreg",
         "--slo", "p99:60ms", "--length", "smoke", "--start-rate", "20", "--cpus", "1", "--no-mlflow",
         "--out", str(out), "--json", str(listing)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "220"})
    assert result.returncode == 0, result.stderr[-3000:]
    (entry,) = json.loads(listing.read_text())
    assert entry["default"]["config"] == {"service_ms": 12, "workers": 1}
    assert entry["best"]["config"] == {"service_ms": 4, "workers": 1}
    assert entry["best"]["capacity_rps"] > 2.0 * entry["default"]["capacity_rps"]  # about 4x in theory
    assert [s["config"]["workers"] for s in entry["skipped"]] == [4, 4] and entry["search"] == "grid"
    assert all("per CPU on 1 CPU(s)" in s["reason"] for s in entry["skipped"])
    assert entry["common_rps"] and entry["best"]["p99_at_common_ms"] < entry["default"]["p99_at_common_ms"]
    assert entry["best"]["cpu_s_per_1000"] > 0 and entry["best"]["rss_mb_max"] > 0
    results = load_results(out)
    # one capacity record per configuration, each naming its probes, every probe a cell of its configuration
    assert [record.config["service_ms"] for record in results.capacity] == [12, 4]
    for record in results.capacity:
        cells = [cell for cell in results.cells if cell.label in record.probes]
        assert len(cells) == len(record.probes) >= 3
        assert all(cell.config == record.config and cell.fairness.settings["service_ms"] == record.config["service_ms"]
                   for cell in cells)
    # the best configuration deployed once more for one profiled cell at the common rate, outside the searches
    (profiled,) = [cell for cell in results.cells if cell.server_profile is not None]
    assert profiled.label.startswith("[service_ms=4,workers=1] profile rate=") and profiled.config["service_ms"] == 4
    assert profiled.load.offered_rps == entry["common_rps"]
    shares = profiled.server_profile.shares if profiled.server_profile else None
    assert shares is not None and sum(shares.model_dump().values()) == pytest.approx(1.0)
    summary = (out / "summary.md").read_text()
    assert "### Tuning" in summary and "| service_ms=4,workers=1 |" in summary
    page = (out / "report.html").read_text()
    assert 'id="tuning"' in page and 'alt="tuning frontier"' in page
    assert "best against best" in result.stdout

