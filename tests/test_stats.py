"""Statistics from raw samples: percentiles, order-statistic intervals, a synthetic cell, per-second rows, validity."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.measure.cell import caveats
from bench.results.samples import DROPPED, SAMPLE_COLUMNS
from bench.results.schema import Counts, Latency, LatencyIntervals
from bench.stats import (
    ACHIEVED_RATE_FLOOR,
    GENERATOR_CPU_LIMIT,
    PERCENTILES,
    CellStats,
    Limits,
    Window,
    invalid_reasons,
    latency_summary,
    per_second,
    sample_interval,
    summarize,
)

# ---- latency_summary ---------------------------------------------------------------------------


def test_latency_summary_hand_computed_one_to_hundred() -> None:
    summary = latency_summary(np.arange(1, 101, dtype=np.float64)).model_dump()
    # numpy's linear interpolation: rank q/100 * (n - 1) between order statistics
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1)
    assert summary["p95"] == pytest.approx(95.05)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["p999"] == pytest.approx(99.901)
    assert summary["max"] == 100.0
    assert summary["mean"] == pytest.approx(50.5)
    assert set(summary) == {"p50", "p90", "p95", "p99", "p999", "max", "mean"}


def test_latency_summary_single_value() -> None:
    summary = latency_summary(np.array([7.25])).model_dump()
    assert all(value == 7.25 for value in summary.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latency_summary_matches_numpy(seed: int) -> None:
    values = np.random.default_rng(seed).lognormal(mean=1.0, sigma=0.8, size=5_001)
    summary = latency_summary(values).model_dump()
    for name, q in PERCENTILES.items():
        assert summary[name] == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert summary["max"] == float(values.max())
    assert summary["mean"] == pytest.approx(float(values.mean()), rel=1e-12)
    # sample order does not matter
    reversed_summary = latency_summary(values[::-1]).model_dump()
    assert reversed_summary == {name: pytest.approx(value, rel=1e-12) for name, value in summary.items()}


def test_latency_summary_empty_gives_nones() -> None:
    summary = latency_summary(np.array([], dtype=np.float64)).model_dump()
    assert summary == {"p50": None, "p90": None, "p95": None, "p99": None, "p999": None, "max": None, "mean": None}


# ---- sample_interval (binomial order statistics) ---------------------------------------------

NORMAL_P99 = 2.3263478740408408  # scipy.stats.norm.ppf(0.99)
NORMAL_P50 = 0.0


@pytest.mark.parametrize(("percentile", "truth"), [(50.0, NORMAL_P50), (99.0, NORMAL_P99)])
def test_sample_interval_brackets_the_true_percentile(percentile: float, truth: float) -> None:
    values = np.random.default_rng(11).normal(size=20_000)
    interval = sample_interval(values, percentile)
    assert interval is not None
    low, high = interval
    assert low < truth < high
    sample = float(np.percentile(values, percentile))
    assert low <= sample <= high
    assert high - low < 0.2  # informative, not the whole range


def test_sample_interval_bounds_are_observed_values() -> None:
    values = np.random.default_rng(2).exponential(size=500)
    interval = sample_interval(values, 99.0)
    assert interval is not None
    assert interval[0] in values and interval[1] in values


def test_sample_interval_covers_the_truth_at_its_confidence() -> None:
    """Coverage over 400 independent samples of 200 exponentials: the true p90 (ln 10) inside 95% of the
    intervals or more (distribution-free, so at least the nominal confidence, up to sampling noise)."""
    rng = np.random.default_rng(21)
    truth = float(np.log(10.0))
    inside = 0
    for _ in range(400):
        interval = sample_interval(rng.exponential(size=200), 90.0)
        assert interval is not None
        inside += interval[0] <= truth <= interval[1]
    assert inside / 400 >= 0.93
    assert inside / 400 < 1.0  # not the whole range every time


def test_sample_interval_narrows_as_n_grows() -> None:
    rng = np.random.default_rng(5)
    widths = []
    for n in (200, 2_000, 20_000):
        interval = sample_interval(rng.normal(size=n), 99.0)
        assert interval is not None
        widths.append(interval[1] - interval[0])
    assert widths[0] > widths[1] > widths[2]
    # roughly 1/sqrt(n): a hundred times the samples gives well under half the width
    assert widths[2] < 0.5 * widths[0]


def test_sample_interval_wider_at_higher_confidence() -> None:
    values = np.random.default_rng(8).normal(size=2_000)
    narrow = sample_interval(values, 50.0, confidence=0.5)
    wide = sample_interval(values, 50.0, confidence=0.99)
    assert narrow is not None and wide is not None
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_sample_interval_needs_twenty_samples() -> None:
    values = np.arange(1.0, 21.0)
    assert sample_interval(values[:19], 50.0) is None
    assert sample_interval(np.array([], dtype=np.float64), 50.0) is None
    interval = sample_interval(values, 50.0)
    assert interval is not None
    assert 1.0 <= interval[0] <= interval[1] <= 20.0


# ---- summarize on a synthetic cell -------------------------------------------------------------
#
# Window 100..110 s (wall clock), warm-up 96..100 s, scheduled every 1/8 s (exact in binary) from 96 s:
# 32 warm-up rows (k = 0..31) then 80 measured rows (j = 0..79, scheduled 100 + j/8).

START, END = 100.0, 110.0
WARMUP_ROWS, MEASURED_ROWS = 32, 80
ERROR_STATUS = {10: 0, 20: 500, 30: 500}  # j -> status: a connection failure and two server errors
SLOW_TAIL = {76, 77, 78, 79}  # complete after the window ends
SLO_MS = 20.0


def _row(scheduled: float, lateness_s: float, service_ms: float, status: int, latency_ms: float) -> dict[str, Any]:
    return {"scheduled": scheduled, "sent": scheduled + lateness_s, "latency_ms": latency_ms,
            "service_ms": service_ms, "status": status, "bytes": 100, "worker": 0, "queued": 0}


def _synthetic_samples() -> pd.DataFrame:
    rows = []
    for k in range(WARMUP_ROWS):
        lateness = {30: 0.30, 31: 0.25}.get(k, 0.001)  # two warm-up requests actually leave inside the window
        rows.append(_row(96.0 + k / 8, lateness, 5000.0, 200, 5000.0))  # huge: must never reach the figures
    for j in range(MEASURED_ROWS):
        lateness = 0.25 if j == 79 else 0.001  # the last one leaves after the window ends
        if j in ERROR_STATUS:
            rows.append(_row(START + j / 8, lateness, 1.0, ERROR_STATUS[j], 99_999.0))
        elif j in SLOW_TAIL:
            rows.append(_row(START + j / 8, lateness, 600.0, 200, lateness * 1000 + 600.0))
        else:
            rows.append(_row(START + j / 8, lateness, 0.5 * j, 200, 1.0 + 0.5 * j))
    frame = pd.DataFrame(rows)
    assert list(frame.columns) == SAMPLE_COLUMNS
    return frame.sample(frac=1.0, random_state=0)  # row order must not matter


def _ok_latencies() -> list[float]:
    return [1.0 + 0.5 * j for j in range(76) if j not in ERROR_STATUS] + [601.0, 601.0, 601.0, 850.0]


@pytest.fixture(scope="module")
def cell() -> CellStats:
    return summarize(_synthetic_samples(), Window(START, END), Limits(slo_ms=SLO_MS, min_requests=50), 8.0)


def test_summarize_counts_measured_requests_and_errors(cell: CellStats) -> None:
    assert cell.counts.scheduled == 80  # the 32 warm-up rows are discarded
    assert cell.counts.errors == 3  # status 0 and 500 are errors
    assert cell.counts == Counts(scheduled=80, sent=80, completed=77, failed=3, dropped=0, queued=0)
    assert cell.counts.error_rate == pytest.approx(3 / 80)
    assert cell.offered_rps == 8.0


def test_summarize_latency_covers_every_scheduled_request_and_latency_ok_the_successful(cell: CellStats) -> None:
    ok = np.array(_ok_latencies())
    assert len(ok) == 77
    every = np.array([*ok, 99_999.0, 99_999.0, 99_999.0])  # the three failures at the latency they failed after
    assert cell.latency == latency_summary(every)
    assert cell.latency.max == 99_999.0  # an error, not 5000 (warm-up)
    assert cell.latency_ok == latency_summary(ok)
    assert cell.latency_ok.max == 850.0
    assert cell.latency.p50 == pytest.approx(float(np.percentile(every, 50)))
    assert cell.latency_ok.mean == pytest.approx(float(ok.mean()))


def test_summarize_service_time_and_intervals(cell: CellStats) -> None:
    service = np.array([0.5 * j for j in range(76) if j not in ERROR_STATUS] + [600.0] * 4)
    assert cell.service == latency_summary(service)
    ok = np.array(_ok_latencies())
    frame = _synthetic_samples()
    measured_ok = frame[(frame["scheduled"] >= START) & (frame["status"] == 200)]["latency_ms"].to_numpy()
    assert sorted(measured_ok) == sorted(ok)
    measured_every = frame[frame["scheduled"] >= START]["latency_ms"].to_numpy()
    assert set(cell.latency_ci.model_dump()) == {"p50", "p99"}
    for name in ("p50", "p99"):
        interval = getattr(cell.latency_ci, name)
        assert interval is not None
        assert (interval.low, interval.high) == sample_interval(measured_every, PERCENTILES[name])
        assert ok.min() <= interval.low <= interval.high <= 99_999.0
    p50_ci = cell.latency_ci.p50
    assert p50_ci is not None and p50_ci.low <= float(np.percentile(ok, 50)) <= p50_ci.high


def test_summarize_rates(cell: CellStats) -> None:
    # achieved: everything sent inside the window, whatever it was scheduled for: measured rows 0..78
    # (79 leaves at 110.125) plus warm-up rows 30 and 31 sent at 100.05 and 100.125 -> 81 in 10 s
    assert cell.achieved_rps == pytest.approx(8.1)
    # throughput: successful requests completed inside the window, whatever they were scheduled for: the 77
    # measured successes minus the slow tail of 4, plus the 32 warm-up requests (5 s each: done at 101-105 s)
    assert cell.throughput_rps == pytest.approx(10.5)
    # goodput: successful measured requests within the SLO (1 + 0.5 j <= 20 ms: j <= 38, less 3 errors)
    assert cell.goodput_rps == pytest.approx(3.6)


def test_summarize_lateness_from_sent_minus_scheduled(cell: CellStats) -> None:
    lateness = np.array([1.0] * 79 + [250.0])  # measured rows only, errors included
    assert cell.lateness.p50 == pytest.approx(1.0, abs=1e-6)
    assert cell.lateness.p99 == pytest.approx(float(np.percentile(lateness, 99)), abs=1e-6)
    assert cell.lateness.max == pytest.approx(250.0, abs=1e-6)  # not 300 (a warm-up row)


def test_summarize_slo_and_span(cell: CellStats) -> None:
    assert cell.slo_met is False  # p99 is hundreds of ms against a 20 ms SLO
    assert cell.measured_s == pytest.approx(10.0)  # traffic until past the end: the whole window


def test_summarize_slo_met_when_percentile_within() -> None:
    # 3 of the 80 failed: p99 lands on a failure (99 999 ms) and misses; p95 is over successes and holds
    missed = summarize(_synthetic_samples(), Window(START, END), Limits(slo_ms=1000.0, slo_percentile="p99"), 8.0)
    assert missed.slo_met is False
    stats = summarize(_synthetic_samples(), Window(START, END), Limits(slo_ms=1000.0, slo_percentile="p95"), 8.0)
    assert stats.slo_met is True
    assert stats.goodput_rps == pytest.approx(7.7)  # every success within 1000 ms
    median = summarize(_synthetic_samples(), Window(START, END), Limits(slo_ms=30.0, slo_percentile="p50"), 8.0)
    assert median.slo_met is True


def test_summarize_span_ends_with_the_last_completion() -> None:
    frame = _synthetic_samples()
    early = frame[frame["scheduled"] < 105.0]  # traffic stops half way (a crashed server, say)
    stats = summarize(early, Window(START, END), Limits(slo_ms=SLO_MS), 8.0)
    # last measured request: scheduled 104.875, sent 104.876, service 0.5 * 39 ms
    assert stats.measured_s == pytest.approx(4.876 + 0.0195)
    assert stats.counts.scheduled == 40


def test_summarize_timeseries_buckets_by_scheduled_second(cell: CellStats) -> None:
    series = [second.model_dump() for second in cell.timeseries]
    assert [row["t"] for row in series] == list(range(-4, 10))  # warm-up seconds are negative
    assert all(row["requests"] == 8 for row in series)
    errors = {row["t"]: row["errors"] for row in series}
    assert errors == {t: (1 if t in (1, 2, 3) else 0) for t in range(-4, 10)}  # j = 10, 20, 30 -> t 1, 2, 3
    warm = series[0]
    assert warm["p50_ms"] == 5000.0 and warm["within_slo"] == 0


def test_summarize_with_no_measured_requests() -> None:
    frame = _synthetic_samples()
    stats = summarize(frame[frame["scheduled"] < START], Window(START, END), Limits(slo_ms=SLO_MS), 8.0)
    assert stats.counts.scheduled == 0 and stats.counts.errors == 0 and stats.counts.error_rate is None
    assert stats.latency.p99 is None and stats.slo_met is None
    assert stats.lateness == Latency()
    assert stats.latency_ci == LatencyIntervals()
    assert stats.measured_s == 0.0
    assert stats.goodput_rps == 0.0
    assert stats.throughput_rps == pytest.approx(3.2)  # the 32 warm-up requests still completed inside it
    assert stats.achieved_rps == pytest.approx(0.2)  # the two late warm-up rows were still sent inside


# ---- per_second --------------------------------------------------------------------------------


def test_per_second_rows() -> None:
    frame = pd.DataFrame([
        _row(49.5, 0.0, 1.0, 200, 3.0),  # t = -1 (origin 50)
        _row(50.0, 0.0, 1.0, 200, 10.0),  # t = 0
        _row(50.2, 0.0, 1.0, 200, 30.0),
        _row(50.9, 0.0, 1.0, 503, 1.0),  # error: counted and in the percentiles, not within_slo
        _row(52.1, 0.0, 1.0, 0, 1.0),  # t = 2: only an error
        _row(53.999, 0.0, 1.0, 204, 15.0),  # t = 3
    ])
    rows = [second.model_dump() for second in per_second(frame, 50.0, slo_ms=20.0)]
    assert [row["t"] for row in rows] == [-1, 0, 2, 3]  # empty seconds are absent
    by_t = {row["t"]: row for row in rows}
    assert by_t[0] == {"t": 0, "requests": 3, "errors": 1, "p50_ms": 10.0,
                       "p99_ms": pytest.approx(float(np.percentile([10.0, 30.0, 1.0], 99))), "within_slo": 1,
                       "served": 2, "server_cpu_percent": None, "server_rss_mb": None}
    assert by_t[2] == {"t": 2, "requests": 1, "errors": 1, "p50_ms": 1.0, "p99_ms": 1.0, "within_slo": 0,
                       "served": 0, "server_cpu_percent": None, "server_rss_mb": None}
    assert by_t[-1]["p50_ms"] == 3.0 and by_t[-1]["within_slo"] == 1
    assert by_t[3]["requests"] == 1 and by_t[3]["errors"] == 0  # 2xx other than 200 is a success


def test_per_second_empty() -> None:
    assert per_second(pd.DataFrame(columns=SAMPLE_COLUMNS), 0.0, 10.0) == []


# ---- invalid_reasons ---------------------------------------------------------------------------

WINDOW = Window(0.0, 10.0)
LIMITS = Limits(slo_ms=50.0, max_error_rate=0.01, min_requests=100, min_duration_s=3.0)


def _counts(scheduled: int, failed: int = 0, dropped: int = 0, queued: int = 0) -> Counts:
    sent = scheduled - dropped
    return Counts(scheduled=scheduled, sent=sent, completed=sent - failed, failed=failed, dropped=dropped,
                  queued=queued)


def _clean() -> CellStats:
    return CellStats(
        counts=_counts(1000), offered_rps=100.0, achieved_rps=100.0, throughput_rps=100.0,
        goodput_rps=100.0, latency=latency_summary(np.arange(1.0, 11.0)),
        latency_ok=latency_summary(np.arange(1.0, 11.0)), latency_ci=LatencyIntervals(),
        service=latency_summary(np.arange(1.0, 11.0)), lateness=Latency(), slo_met=True, measured_s=9.99,
    )


def test_clean_cell_has_no_reasons() -> None:
    assert invalid_reasons(_clean(), LIMITS, WINDOW, parity_ok=True, generator_cpu_max=50.0, loop="open") == []
    assert invalid_reasons(_clean(), LIMITS, WINDOW, parity_ok=True, generator_cpu_max=None, loop="open") == []


def test_slo_miss_alone_does_not_invalidate() -> None:
    missed = dataclasses.replace(_clean(), slo_met=False)
    assert invalid_reasons(missed, LIMITS, WINDOW, True, 50.0, loop="open") == []


def _only_reason(stats: CellStats, parity_ok: bool = True, cpu: float | None = 50.0, loop: str = "open") -> str:
    reasons = invalid_reasons(stats, LIMITS, WINDOW, parity_ok, cpu, loop=loop)
    assert len(reasons) == 1, reasons
    return reasons[0]


def test_parity_failure_alone() -> None:
    assert "parity" in _only_reason(_clean(), parity_ok=False)


def test_short_traffic_span_alone() -> None:
    # the window is 10 s, longer than min_duration_s: answered traffic over 5 s of it is too little
    reason = _only_reason(dataclasses.replace(_clean(), measured_s=5.0))
    assert "5.0 s of the 10.0 s window" in reason
    assert "0.0 s of the 10.0 s window" in _only_reason(dataclasses.replace(_clean(), measured_s=0.0))
    assert invalid_reasons(dataclasses.replace(_clean(), measured_s=9.5), LIMITS, WINDOW, True, 50.0, loop="open") == []


def test_window_shorter_than_the_minimum_duration_alone() -> None:
    """DESIGN: a valid cell met the minimum duration. A fully covered 2 s window under a 3 s minimum fails."""
    short = Window(0.0, 2.0)
    stats = dataclasses.replace(_clean(), measured_s=2.0)
    reasons = invalid_reasons(stats, LIMITS, short, True, 50.0, loop="open")
    assert len(reasons) == 1, reasons
    assert "minimum" in reasons[0] and "3.0 s" in reasons[0]


def test_window_at_the_minimum_duration_with_normal_coverage_is_valid() -> None:
    """A clean 3 s window at 50 req/s: the last request is scheduled 20 ms before the end, so traffic spans
    about 2.98 s. Requiring 99.9% coverage when the window equals min_duration_s would reject it."""
    at_minimum = Window(0.0, 3.0)
    stats = dataclasses.replace(_clean(), counts=_counts(150), offered_rps=50.0, achieved_rps=50.0, measured_s=2.9815)
    limits = dataclasses.replace(LIMITS, min_duration_s=3.0)
    assert invalid_reasons(stats, limits, at_minimum, True, 50.0, loop="open") == []


def test_too_few_requests_alone() -> None:
    reason = _only_reason(dataclasses.replace(_clean(), counts=_counts(99)))
    assert "99 requests" in reason and "100" in reason
    at_minimum = dataclasses.replace(_clean(), counts=_counts(100))
    assert invalid_reasons(at_minimum, LIMITS, WINDOW, True, 50.0, loop="open") == []


def test_generator_behind_schedule_alone() -> None:
    reason = _only_reason(dataclasses.replace(_clean(), achieved_rps=94.9))
    assert "achieved 94.9 req/s" in reason and "fell behind" in reason
    at_floor = dataclasses.replace(_clean(), achieved_rps=ACHIEVED_RATE_FLOOR * 100.0)
    assert invalid_reasons(at_floor, LIMITS, WINDOW, True, 50.0, loop="open") == []


def test_a_poisson_schedule_is_held_to_what_it_scheduled_not_to_the_nominal_rate() -> None:
    """A seeded Poisson draw at 100/s may hold 88 requests per second of the window: a generator that
    sent all of them on time is valid; one that sent 80/s fell behind that schedule."""
    drawn = dataclasses.replace(_clean(), scheduled_rps=88.0, achieved_rps=88.0)
    assert invalid_reasons(drawn, LIMITS, WINDOW, True, 50.0, loop="open") == []
    reason = _only_reason(dataclasses.replace(drawn, achieved_rps=80.0))
    assert "achieved 80.0 req/s, below 95% of the scheduled 88.0" in reason and "fell behind" in reason


def test_achieved_rate_not_checked_without_an_offered_rate() -> None:
    closed = dataclasses.replace(_clean(), offered_rps=None, achieved_rps=3.0)
    assert invalid_reasons(closed, LIMITS, WINDOW, True, 50.0, loop="open") == []


def test_a_closed_loops_generator_cpu_alone() -> None:
    reason = _only_reason(_clean(), cpu=GENERATOR_CPU_LIMIT + 0.5, loop="closed")
    assert "CPU" in reason and "90" in reason
    assert invalid_reasons(_clean(), LIMITS, WINDOW, True, GENERATOR_CPU_LIMIT, loop="closed") == []


def test_an_open_loops_generator_cpu_is_not_judged() -> None:
    """It waits out each send's last stretch on the CPU: its lateness says whether it kept time."""
    assert invalid_reasons(_clean(), LIMITS, WINDOW, True, 99.0, loop="open") == []


def test_error_rate_over_limit_alone() -> None:
    reason = _only_reason(dataclasses.replace(_clean(), counts=_counts(1000, failed=20)))
    assert "error rate 2.00%" in reason
    at_limit = dataclasses.replace(_clean(), counts=_counts(1000, failed=10))
    assert invalid_reasons(at_limit, LIMITS, WINDOW, True, 50.0, loop="open") == []


def test_every_rule_at_once() -> None:
    bad = dataclasses.replace(_clean(), counts=_counts(10, failed=5), achieved_rps=10.0, measured_s=1.0)
    reasons = invalid_reasons(bad, LIMITS, WINDOW, parity_ok=False, generator_cpu_max=99.0, loop="closed")
    assert len(reasons) == 6


@pytest.mark.parametrize("rate", [10.0, 50.0, 400.0])
def test_clean_constant_rate_cell_at_the_minimum_duration_is_valid(rate: float) -> None:
    """End to end through summarize: 1 s warm-up then a 3 s window equal to min_duration_s, every request sent
    0.05 ms late and answered in 1 ms. Nothing is wrong with this cell."""
    offsets = np.arange(int(4.0 * rate)) / rate
    origin = 1_000.0
    frame = pd.DataFrame({"scheduled": origin + offsets, "sent": origin + offsets + 0.00005, "latency_ms": 1.05,
                          "service_ms": 1.0, "status": 200, "bytes": 10, "worker": 0, "queued": 0})
    window = Window(origin + 1.0, origin + 4.0)
    limits = Limits(slo_ms=100.0, min_requests=20, min_duration_s=3.0)
    stats = summarize(frame, window, limits, rate)
    assert stats.counts.scheduled == int(3 * rate)
    assert stats.achieved_rps == pytest.approx(rate)
    assert invalid_reasons(stats, limits, window, True, 10.0, loop="open") == []


# ---- every scheduled request accounted for -----------------------------------------------------


def _overloaded_samples() -> pd.DataFrame:
    """10 s at 10/s: the first 60 answered in 5 ms, the next 20 sent late after waiting for a connection
    (1 s late, answered), one timed out, and the last 19 still waiting when the run ended at 15 s."""
    rows = []
    for j in range(100):
        scheduled = START + j / 10
        if j < 60:
            rows.append({**_row(scheduled, 0.001, 4.0, 200, 5.0)})
        elif j < 80:
            rows.append({**_row(scheduled, 1.0, 4.0, 200, 1004.0), "queued": 1})
        elif j == 80:
            rows.append({**_row(scheduled, 1.0, 3000.0, 0, 4000.0), "queued": 1})
        else:
            rows.append({**_row(scheduled, 0.0, 0.0, DROPPED, (START + 15.0 - scheduled) * 1000.0),
                         "sent": float("nan"), "service_ms": float("nan"), "queued": 1})
    return pd.DataFrame(rows)


def test_dropped_requests_are_scheduled_but_not_sent_and_count_as_errors() -> None:
    stats = summarize(_overloaded_samples(), Window(START, END), Limits(slo_ms=SLO_MS, min_requests=50), 10.0)
    counts = stats.counts
    assert counts == Counts(scheduled=100, sent=81, completed=80, failed=1, dropped=19, queued=21)
    assert counts.scheduled == counts.sent + counts.dropped
    assert stats.counts.errors == 20 and stats.counts.error_rate == pytest.approx(0.2)
    # the percentiles include the timeout and the drops (at 15 s minus their schedule, 6.9 s at most)
    assert stats.latency.max == pytest.approx(6900.0)
    assert stats.latency.p99 is not None and stats.latency.p99 > 6000.0
    assert stats.latency_ok.max == 1004.0
    assert stats.lateness.max == pytest.approx(1000.0)  # over requests that were sent
    assert stats.achieved_rps == pytest.approx(8.1)


def test_an_overloaded_server_is_named_as_the_cause_not_the_generator() -> None:
    limits = Limits(slo_ms=SLO_MS, min_requests=50)
    stats = summarize(_overloaded_samples(), Window(START, END), limits, 10.0)
    reasons = invalid_reasons(stats, limits, Window(START, END), True, 30.0, loop="open")
    assert any(r.startswith("the server could not keep up") and "19 never" in r for r in reasons), reasons
    assert not any("generator" in r for r in reasons), reasons


def test_requests_that_waited_for_a_connection_blame_the_server_even_without_drops() -> None:
    queued = dataclasses.replace(_clean(), counts=_counts(1000, queued=11))
    assert "could not keep up" in _only_reason(queued)
    assert invalid_reasons(dataclasses.replace(_clean(), counts=_counts(1000, queued=10)), LIMITS, WINDOW, True,
                           50.0, loop="open") == []


def _late(p50_ms: float, latency_p50_ms: float, queued: int = 0) -> CellStats:
    latency = latency_summary(np.full(100, latency_p50_ms))
    return dataclasses.replace(_clean(), latency=latency, lateness=latency_summary(np.full(100, p50_ms)),
                               counts=_counts(1000, queued=queued))


def test_a_cell_whose_latency_is_mostly_the_generators_lateness_is_invalid() -> None:
    """800 req/s against FastAPI (issue 25): lateness p50 0.52 ms of a 1.07 ms latency p50."""
    (reason,) = invalid_reasons(_late(0.52, 1.07), LIMITS, WINDOW, True, 50.0, loop="open")
    assert "generator was late by p50 0.520 ms" in reason and "1.070 ms" in reason
    assert caveats(_late(0.52, 1.07), LIMITS) == []  # invalid, not also warned about


def test_a_generator_lateness_share_below_the_bound_is_a_warning() -> None:
    assert invalid_reasons(_late(0.2, 1.0), LIMITS, WINDOW, True, 50.0, loop="open") == []
    (note,) = caveats(_late(0.2, 1.0), LIMITS)
    assert "20% of the latency p50" in note
    assert caveats(_late(0.04, 0.1), LIMITS) == []  # below the clock's noise floor
    assert caveats(_late(0.05, 1.0), LIMITS) == []  # 5%: within the stated share


def test_lateness_from_waiting_for_a_connection_is_the_servers_not_the_generators() -> None:
    reasons = invalid_reasons(_late(5.0, 6.0, queued=100), LIMITS, WINDOW, True, 50.0, loop="open")
    assert len(reasons) == 1 and reasons[0].startswith("the server could not keep up")
