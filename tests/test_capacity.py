"""The capacity search against simulated servers whose knee is known: a single-server queue with a fixed
service time and Poisson arrivals (M/D/1), where the p99 of the time in the system grows with the rate
and the highest rate within an SLO follows from queueing alone."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from queueing import SLO_MS, sojourn_ms, true_knee

from bench.config import RunLength, Scenario, Slo, parse_runtime_spec
from bench.load.driver import LiveTick
from bench.measure.capacity import Outcome, SearchSettings, rounded, run_search, search, summarise
from bench.measure.capacity_run import CapacityPlan, collapse_rule, outcome_of, probe_scenario
from bench.results.schema import (
    Cell,
    Counts,
    GeneratorUsage,
    Interval,
    Latency,
    LatencyIntervals,
    LoadPoint,
    RunResults,
    Validity,
)
from bench.results.store import RunStore
from bench.stats import sample_interval


def simulated_probe(seconds: float = 30.0) -> tuple[list[float], object]:
    probed: list[float] = []

    def probe(rate: float) -> Outcome:
        latencies = sojourn_ms(rate, seconds, seed=len(probed) + 7)
        probed.append(rate)
        p99 = float(np.percentile(latencies, 99))
        low, high = sample_interval(latencies, 99.0) or (None, None)
        return Outcome(rate, p99 <= SLO_MS, p99, low, high, label=f"rate={rate:g}")

    return probed, probe


def test_the_search_finds_the_knee_queueing_predicts() -> None:
    truth = true_knee()
    probed, probe = simulated_probe()
    result = run_search(SearchSettings(start_rps=5.0, slo_ms=SLO_MS), probe)  # type: ignore[arg-type]
    assert result.capacity_rps is not None and result.limited_by is None
    assert abs(result.capacity_rps / truth - 1) <= 0.10, (result.capacity_rps, truth)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= result.capacity_rps < result.ci_high
    assert result.ci_low <= truth * 1.1 and result.ci_high >= truth * 0.9
    # bracket by doubling from 5, then bisection, then two repeats at each end of the bracket
    assert probed[:4] == [5.0, 10.0, 20.0, 40.0] and len(probed) <= 16


def test_the_search_is_reproducible() -> None:
    first = run_search(SearchSettings(start_rps=5.0, slo_ms=SLO_MS), simulated_probe()[1])  # type: ignore[arg-type]
    second = run_search(SearchSettings(start_rps=5.0, slo_ms=SLO_MS), simulated_probe()[1])  # type: ignore[arg-type]
    assert first == second


def test_a_start_above_the_knee_halves_down_to_it() -> None:
    probed, probe = simulated_probe()
    result = run_search(SearchSettings(start_rps=200.0, slo_ms=SLO_MS), probe)  # type: ignore[arg-type]
    assert probed[:4] == [200.0, 100.0, 50.0, 25.0]
    assert result.capacity_rps is not None and abs(result.capacity_rps / true_knee() - 1) <= 0.10


def test_bisection_stops_at_the_resolution() -> None:
    steps = search(SearchSettings(start_rps=10.0, resolution=0.05, repeats=0, slo_ms=50.0))
    rate = next(steps)
    rates = []
    try:
        while True:
            rates.append(rate)
            rate = steps.send(Outcome(rate, rate <= 33.3, 50.0 * rate / 33.3))
    except StopIteration as done:
        result = done.value
    assert rates[:3] == [10.0, 20.0, 40.0]
    assert result.capacity_rps <= 33.3 and 33.3 / result.capacity_rps - 1 <= 0.05 * 1.01


@pytest.mark.parametrize(("limit", "outcome", "expected"), [
    ("max rate", lambda rate: Outcome(rate, True, 10.0, 9.0, 11.0), "max rate"),
    ("generator", lambda rate: Outcome(rate, rate <= 100, 10.0, 9.0, 11.0, generator_limited=rate > 100),
     "generator"),
    ("min rate", lambda rate: Outcome(rate, False), "min rate"),
])
def test_a_limit_is_reported_not_passed_off_as_a_knee(limit: str, outcome: object, expected: str) -> None:
    settings = SearchSettings(start_rps=50.0, max_rps=400.0, min_rps=5.0, slo_ms=SLO_MS)
    result = run_search(settings, outcome)  # type: ignore[arg-type]
    assert result.limited_by == expected
    if expected == "max rate":
        assert result.capacity_rps == 400.0 and result.ci_high is None  # open above: a lower bound
    if expected == "min rate":
        assert result.capacity_rps is None


def test_the_capacity_is_where_the_monotone_fit_crosses_the_slo() -> None:
    """Repeats are averaged (in log), a dip at a higher rate is pooled away, and the crossing between the
    probed rates is interpolated; the intervals cross through the probes' bounds."""
    outcomes = [Outcome(10, True, 20.0, 18.0, 22.0), Outcome(20, True, 60.0, 50.0, 70.0),
                Outcome(40, False, 400.0, 300.0, 500.0), Outcome(28.3, True, 90.0, 70.0, 130.0),
                Outcome(28.3, False, 130.0, 100.0, 170.0), Outcome(20, True, 50.0, 45.0, 60.0),
                Outcome(40, False, 350.0, 250.0, 450.0)]
    result = summarise(outcomes, None, SLO_MS)
    assert result.capacity_rps is not None and 20 < result.capacity_rps < 28.3  # mean of 90 and 130 is over 100
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < result.capacity_rps < result.ci_high <= 40
    dipped = summarise([Outcome(10, True, 20.0), Outcome(20, True, 80.0), Outcome(28.3, True, 60.0),
                        Outcome(40, False, 400.0)], None, SLO_MS)
    assert dipped.capacity_rps is not None and 28.3 < dipped.capacity_rps < 40


def test_an_invalid_probe_counts_as_infinitely_slow() -> None:
    result = summarise([Outcome(10, True, 20.0), Outcome(20, True, 40.0), Outcome(40, False)], None, SLO_MS)
    assert result.capacity_rps == 20.0


def test_rates_are_rounded_to_three_significant_figures() -> None:
    assert [rounded(r) for r in (28.284271, 1414.2135, 0.70710678)] == [28.3, 1410.0, 0.707]


# ---- probes as cells (bench.measure.capacity_run) --------------------------------------------------


def _cell(rate: float, p99: float, low: float, high: float, valid: bool = True, cpu: float = 20.0,
          late_p50: float = 0.01, loop: Literal["open", "closed"] = "open") -> Cell:
    return Cell(cell_id="x", runtime="fake", model="m", scenario="probe", target="local", label=f"rate={rate:g}",
                load=LoadPoint(loop=loop, offered_rps=rate), latency=Latency(p50=1.0, p99=p99),
                lateness=Latency(p50=late_p50),
                latency_ci=LatencyIntervals(p99=Interval(low=low, high=high)), slo_met=p99 <= SLO_MS,
                generator=GeneratorUsage(cpu_percent_max=cpu), validity=Validity(valid=valid),
                counts=Counts(scheduled=9, sent=9, completed=9))


SLO = Slo(percentile="p99", ms=SLO_MS)


@pytest.mark.parametrize(("cell", "passed", "value", "limited"), [
    (_cell(10, 40, 30, 60), True, 40.0, False),
    (_cell(10, 300, 200, 400), False, 300.0, False),  # valid, over the SLO: its p99 enters the fit
    (_cell(10, 40, 30, 60, valid=False), False, float("inf"), False),  # invalid (errors, a collapse): inf
    # the generator was the limit: an open loop's sends late by half the latency, a closed loop's CPU past 90%
    (_cell(10, 40, 30, 60, valid=False, late_p50=0.5), False, float("inf"), True),
    (_cell(10, 40, 30, 60, valid=False, cpu=97.0, loop="closed"), False, float("inf"), True),
    # an open loop's CPU reads high while it waits out each send on time: not the limit
    (_cell(10, 40, 30, 60, cpu=97.0), True, 40.0, False),
])
def test_a_probe_cell_becomes_an_outcome(cell: Cell, passed: bool, value: float, limited: bool) -> None:
    outcome = outcome_of(cell, SLO)
    assert (outcome.passed, outcome.value_ms, outcome.generator_limited, outcome.rate) == (passed, value, limited, 10)
    if passed:
        assert (outcome.low_ms, outcome.high_ms) == (30.0, 60.0)


def test_a_collapsed_probe_is_stopped_after_three_seconds_over_five_times_the_slo() -> None:
    rule = collapse_rule(SLO_MS)
    ticks = [(-1.0, 900.0), (0.0, 600.0), (1.0, 40.0), (2.0, 600.0), (3.0, 700.0)]
    assert [rule(LiveTick(t, 10.0, p99, 0)) for t, p99 in ticks] == [None] * 5  # warm-up, then broken runs
    assert rule(LiveTick(4.0, 10.0, 800.0, 0)) is not None


def test_the_plan_asks_for_probes_and_records_the_capacity(tmp_path: Path) -> None:
    base = probe_scenario(Scenario(name="probe", loop="open", rate=10, duration_s=5, warmup_s=1), SLO)
    runtime = parse_runtime_spec(Path(__file__).parent / "data" / "fake-runtime" / "runtime.yaml")
    plan = CapacityPlan(runtime, "m", base, RunLength(name="full", time_scale=1.0), SearchSettings(start_rps=10.0))
    measurement = plan.next(None)
    rates = []
    while measurement is not None:
        rates.append(measurement.offered_rps)
        assert measurement.stop_when is not None and measurement.arrival.kind == "poisson"
        rate = measurement.offered_rps or 0.0
        p99 = 20.0 if rate <= 33 else 300.0
        measurement = plan.next(_cell(rate, p99, p99 * 0.8, p99 * 1.2).model_copy(update={"label": measurement.label}))
    store = RunStore.create(tmp_path, RunResults(run_id="t"))
    plan.finish(store)
    (entry,) = store.results.capacity
    assert rates[:3] == [10.0, 20.0, 40.0] and entry.capacity_rps is not None and 31 <= entry.capacity_rps <= 33
    assert entry.probes == tuple(plan.labels) and len(set(entry.probes)) == len(entry.probes)  # repeats: #2


def test_a_stall_in_the_first_probe_does_not_cap_the_search_below_the_knee() -> None:
    """The first probe failing by a stall sends the search down; its repeats pass clearly, so the search
    goes on above it and finds the knee (as the integration test's fake server once showed: 40 req/s)."""
    probed, probe = simulated_probe()

    def first_one_stalls(rate: float) -> Outcome:
        outcome: Outcome = probe(rate)  # type: ignore[operator]
        return Outcome(rate, False, 1.4 * SLO_MS, 1.2 * SLO_MS, 1.6 * SLO_MS) if len(probed) == 1 else outcome

    result = run_search(SearchSettings(start_rps=20.0, slo_ms=SLO_MS), first_one_stalls)  # the knee: ~27
    assert probed[:2] == [20.0, 10.0]  # down first, as a real failure would send it
    assert max(probed) >= 40.0  # then on above the stalled start once its repeats passed
    assert result.capacity_rps is not None and abs(result.capacity_rps / true_knee() - 1) <= 0.10, result
