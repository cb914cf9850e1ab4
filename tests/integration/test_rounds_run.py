"""`bench run --rounds` with two real servers of known speed: the test double answering at once and the one
taking 12 ms per request; rounds interleave with the order rotated, and the faster one wins every round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.models.registry import LocalModel
from bench.results.store import load_results

DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = pytest.mark.integration


def test_rounds_rotate_the_order_and_rank_the_known_faster_server_first(tmp_path: Path,
                                                                          models: dict[str, LocalModel]) -> None:
    scenario = tmp_path / "short.yaml"
    scenario.write_text(json.dumps({"name": "short", "loop": "open", "arrival": "poisson", "rate": 30,
                                    "warmup_s": 1, "duration_s": 4, "min_requests": 50}))
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--runtime", f"{DATA / 'fake-runtime'},{DATA / 'fake-tunable'}",
         "--model", "iris-logreg", "--scenario", str(scenario), "--length", "full", "--rounds", "2", "--no-mlflow",
         "--out", str(out)], capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(out)
    assert [(c.round, c.runtime) for c in results.cells] == [
        (1, "fake"), (1, "fake-tunable"), (2, "fake-tunable"), (2, "fake")]
    by_runtime = {r.runtime: r for r in results.rounds}
    assert set(by_runtime) == {"fake", "fake-tunable"} and all(r.valid_rounds == 2 for r in results.rounds)
    fast, slow = by_runtime["fake"], by_runtime["fake-tunable"]
    assert (fast.estimate_ms or 99) < 12 < (slow.estimate_ms or 0)  # 12 ms of service time per request
    summary = (out / "summary.md").read_text()
    assert "### Rounds" in summary and "fake faster than fake-tunable in 2 of 2 rounds" in summary
    assert "p99 over 2 rounds: fake" in summary
    assert 'id="rounds"' in (out / "report.html").read_text()
    assert "rounds (interleaved" in result.stdout
