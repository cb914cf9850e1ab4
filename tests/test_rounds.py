"""bench run --rounds: the order rotated, rounds combined with a two-level bootstrap, a ranking only where
intervals separate, and pairwise orders counted (pure logic on synthetic samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.measure.rounds import combine_rounds, rotated, seconds_of, two_level_interval
from bench.report.rounds import pair_orders, ranking_lines, rounds_rows
from bench.results.schema import Cell, RoundsRecord, Validity


def samples(rng: np.random.Generator, median_ms: float, seconds: int = 10, per_second: int = 50) -> pd.DataFrame:
    scheduled = np.repeat(np.arange(seconds, dtype=float), per_second) + rng.uniform(0, 1, seconds * per_second)
    latency = rng.lognormal(np.log(median_ms), 0.3, seconds * per_second)
    return pd.DataFrame({"scheduled": 1000.0 + scheduled, "latency_ms": latency, "status": 200, "in_window": True})


def test_each_runtime_takes_each_position_in_turn() -> None:
    runtimes = ["a", "b", "c"]
    orders = [rotated(runtimes, r) for r in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert {order[0] for order in orders} == set(runtimes)


def test_seconds_keep_only_successful_requests_inside_the_window() -> None:
    frame = pd.DataFrame({"scheduled": [0.1, 0.5, 1.2, 1.9, 2.5], "latency_ms": [1.0, 2.0, 3.0, 4.0, 5.0],
                          "status": [200, 500, 200, 200, 200], "in_window": [True, True, True, True, False]})
    assert [list(s) for s in seconds_of(frame)] == [[1.0], [3.0, 4.0]]


def test_round_to_round_drift_widens_the_interval() -> None:
    """Three rounds at one level give a narrow interval; the same requests with rounds 20% apart, a wide one."""
    rng = np.random.default_rng(1)
    steady = [seconds_of(samples(rng, 5.0)) for _ in range(3)]
    drifting = [seconds_of(samples(rng, median)) for median in (4.0, 5.0, 6.0)]
    narrow, wide = two_level_interval(steady, 50.0), two_level_interval(drifting, 50.0)
    assert narrow is not None and wide is not None
    assert (wide[1] - wide[0]) > 3 * (narrow[1] - narrow[0])
    assert narrow[0] < 5.0 < narrow[1]
    assert two_level_interval(steady[:1], 50.0) is None  # one round: nothing to resample between


def test_rounds_of_cells_combine_per_runtime_and_load_point(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cells = []
    for round_index in (1, 2, 3):
        for runtime, median in (("fast", 2.0), ("slow", 8.0)):
            name = f"{runtime}-{round_index}.parquet"
            samples(rng, median).to_parquet(tmp_path / name)
            cells.append(Cell(cell_id=name, runtime=runtime, model="m", scenario="s", target="local", label="rate=50",
                              round=round_index, samples_file=name, validity=Validity(valid=True)))
    no_round = Cell(cell_id="x", runtime="fast", model="m", scenario="s", target="local", label="rate=50")
    cells.append(no_round)
    records = combine_rounds(cells, tmp_path, "p99")
    by_runtime = {r.runtime: r for r in records}
    assert set(by_runtime) == {"fast", "slow"} and all(r.rounds == 3 == r.valid_rounds for r in records)
    fast, slow = by_runtime["fast"], by_runtime["slow"]
    assert fast.ci_low_ms is not None and fast.ci_high_ms is not None and fast.estimate_ms is not None
    assert fast.ci_low_ms <= fast.estimate_ms <= fast.ci_high_ms < (slow.ci_low_ms or 0)
    assert len(fast.per_round_ms) == 3 and all(v is not None and 2.0 < v < 8.0 for v in fast.per_round_ms)


def record(runtime: str, estimate: float, low: float, high: float, per_round: tuple[float, ...]) -> RoundsRecord:
    return RoundsRecord(runtime=runtime, model="m", label="rate=50", percentile="p99", rounds=len(per_round),
                        valid_rounds=len(per_round), estimate_ms=estimate, ci_low_ms=low, ci_high_ms=high,
                        per_round_ms=per_round)


def test_only_separated_intervals_are_ranked_and_pair_orders_are_counted() -> None:
    records = [record("b", 6.0, 5.0, 7.0, (6.0, 5.5, 6.5)), record("a", 3.0, 2.5, 3.5, (3.0, 3.2, 2.9)),
               record("c", 6.5, 5.5, 7.5, (7.0, 5.0, 7.0))]
    assert ranking_lines(records) == ["m rate=50, p99 over 3 rounds: a < b = c; '=' is a tie: the intervals overlap"]
    orders = {(o.faster, o.slower): (o.held, o.compared) for o in pair_orders(records)}
    assert orders == {("a", "b"): (3, 3), ("b", "c"): (2, 3), ("a", "c"): (3, 3)}
    assert [row.runtime for row in rounds_rows(records)] == ["a", "b", "c"]
    assert rounds_rows(records)[0].per_round == "3.00, 3.20, 2.90"
