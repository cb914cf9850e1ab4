"""Statistics from raw samples: percentiles, confidence intervals, per-second series, validity.

Everything is computed from the raw per-request samples after the warm-up window, never from Locust's
bucketed statistics (which round to about two significant digits and whole milliseconds).
Knows nothing about deployments: it sees a sample table, a measurement window and the scenario's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.config import PERCENTILE_LEVELS
from bench.protocols import Array
from bench.results.samples import BOUNDARY_TOLERANCE_S, is_dropped, is_success
from bench.results.schema import Counts, Interval, Latency, LatencyIntervals, Second

PERCENTILES = PERCENTILE_LEVELS
BOOTSTRAP_RESAMPLES = 400
GENERATOR_CPU_LIMIT = 90.0
ACHIEVED_RATE_FLOOR = 0.95
SERVER_QUEUED_SHARE = 0.01  # more requests than this waited for a free connection: the server fell behind
COVERAGE_FLOOR = 0.9  # answered traffic must span 90% of the window (a crash or stop ends it early)


def latency_summary(latencies_ms: Array) -> Latency:
    """p50..p99.9, max and mean (numpy's linear interpolation between order statistics)."""
    if len(latencies_ms) == 0:
        return Latency()
    values = np.percentile(latencies_ms, list(PERCENTILES.values()))
    return Latency(**{name: float(v) for name, v in zip(PERCENTILES, values, strict=True)},
                   max=float(np.max(latencies_ms)), mean=float(np.mean(latencies_ms)))


def bootstrap_ci(values: Array, percentile: float, confidence: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of one percentile; None with fewer than 20 samples."""
    if len(values) < 20:
        return None
    rng = np.random.default_rng(seed)
    estimates = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(values))  # bound memory: resamples x samples floats at a time
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = rng.choice(values, size=(size, len(values)), replace=True)
        estimates[start : start + size] = np.percentile(draws, percentile, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Window:
    """The measured part of a load test, in wall-clock seconds; everything before start is warm-up."""

    start: float
    end: float

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Limits:
    """What a scenario demands of a valid cell."""

    slo_ms: float
    slo_percentile: str = "p99"
    max_error_rate: float = 0.01
    min_requests: int = 100
    min_duration_s: float = 1.0


@dataclass
class CellStats:
    counts: Counts
    offered_rps: float | None
    achieved_rps: float
    throughput_rps: float
    goodput_rps: float
    latency: Latency  # every scheduled request (failed at their failure, dropped at the end of the run)
    latency_ok: Latency  # successful requests only
    latency_ci: LatencyIntervals
    service: Latency
    lateness: Latency
    slo_met: bool | None
    measured_s: float
    timeseries: list[Second] = field(default_factory=list)
    # requests per second the schedule itself held for the window: the offered rate for a constant
    # schedule, the seeded realisation of it for Poisson arrivals (250 +- 16 requests in 5 s at 50/s)
    scheduled_rps: float | None = None

    @property
    def requests(self) -> int:
        return self.counts.scheduled

    @property
    def errors(self) -> int:
        return self.counts.errors

    @property
    def error_rate(self) -> float:
        return self.counts.error_rate or 0.0



def in_window(scheduled: pd.Series, window: Window) -> pd.Series:
    """Which requests were scheduled inside the window (warm-up before it, drain after it)."""
    return (scheduled >= window.start - BOUNDARY_TOLERANCE_S) & (scheduled < window.end - BOUNDARY_TOLERANCE_S)


def measured(samples: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Requests scheduled inside the window: warm-up requests are discarded, late ones kept."""
    return samples.loc[in_window(samples["scheduled"], window)]


def summarize(samples: pd.DataFrame, window: Window, limits: Limits, offered_rps: float | None,
              scheduled_rps: float | None = None) -> CellStats:
    """The figures of one cell, over every request scheduled inside the window. Latency is measured from
    the scheduled send time and its percentiles include failures (at the latency they failed after) and
    drops (at the end of the run); the success-only percentiles are kept beside them. Service time is
    from the actual send time, of successful requests."""
    inside = measured(samples, window)
    success = is_success(inside["status"])
    dropped = is_dropped(inside["status"])
    ok = inside.loc[success]
    duration = window.duration_s
    every = inside["latency_ms"].to_numpy(dtype=np.float64)
    latencies = ok["latency_ms"].to_numpy(dtype=np.float64)
    queued = int(inside["queued"].sum()) if "queued" in inside else None
    counts = Counts(scheduled=len(inside), sent=int((~dropped).sum()), completed=len(ok),
                    failed=int((~success & ~dropped).sum()), dropped=int(dropped.sum()),
                    queued=None if queued is None else queued - int(dropped.sum()))
    sent_inside = int(((samples["sent"] >= window.start) & (samples["sent"] < window.end)).sum())
    # whatever they were scheduled for, as for the achieved rate: an overloaded server spends the window on
    # the warm-up's backlog, and its throughput is still what it completed in the window
    answered = samples.loc[is_success(samples["status"])]
    done = answered["sent"] + answered["service_ms"] / 1000.0
    completed_inside = int(((done >= window.start) & (done < window.end)).sum())
    latency = latency_summary(every)
    slo_value = latency.percentile(limits.slo_percentile)
    was_sent = inside.loc[~dropped]
    lateness = (was_sent["sent"] - was_sent["scheduled"]).to_numpy(dtype=np.float64) * 1000.0
    return CellStats(
        counts=counts,
        offered_rps=offered_rps,
        scheduled_rps=scheduled_rps,
        achieved_rps=sent_inside / duration,
        throughput_rps=completed_inside / duration,
        goodput_rps=float((latencies <= limits.slo_ms).sum()) / duration,
        latency=latency,
        latency_ok=latency_summary(latencies),
        latency_ci=LatencyIntervals(p50=_interval(bootstrap_ci(every, PERCENTILES["p50"])),
                                    p99=_interval(bootstrap_ci(every, PERCENTILES["p99"]))),
        service=latency_summary(ok["service_ms"].to_numpy(dtype=np.float64)),
        lateness=latency_summary(lateness),
        slo_met=None if slo_value is None else slo_value <= limits.slo_ms,
        measured_s=_span(inside, window),
        timeseries=per_second(samples, window.start - 0.0, limits.slo_ms),
    )


def _interval(bounds: tuple[float, float] | None) -> Interval | None:
    return None if bounds is None else Interval(low=bounds[0], high=bounds[1])


def _span(inside: pd.DataFrame, window: Window) -> float:
    """How much of the window actually saw traffic (a crashed server or a stopped run ends it early)."""
    if inside.empty:
        return 0.0
    last = float((inside["sent"] + inside["service_ms"] / 1000.0).max())
    return max(0.0, min(window.end, last) - window.start)


def per_second(samples: pd.DataFrame, origin: float, slo_ms: float) -> list[Second]:
    """One row per second of scheduled time since origin (negative seconds are warm-up): every request
    scheduled in it, those that did not succeed (failed or dropped), and the percentiles over all of them."""
    if samples.empty:
        return []
    second = np.floor(samples["scheduled"].to_numpy() - origin + BOUNDARY_TOLERANCE_S).astype(int)
    ok = is_success(samples["status"]).to_numpy()
    latency = samples["latency_ms"].to_numpy()
    rows = []
    for value in np.unique(second):
        in_second = second == value
        every = latency[in_second]
        rows.append(Second(
            t=int(value), requests=int(in_second.sum()), errors=int((in_second & ~ok).sum()),
            p50_ms=float(np.percentile(every, 50)), p99_ms=float(np.percentile(every, 99)),
            within_slo=int((latency[in_second & ok] <= slo_ms).sum()),
        ))
    return rows


def invalid_reasons(stats: CellStats, limits: Limits, window: Window, parity_ok: bool,
                    generator_cpu_max: float | None) -> list[str]:
    """Why a cell cannot be trusted; an empty list means valid."""
    reasons = []
    if not parity_ok:
        reasons.append("parity check failed")
    if window.duration_s < limits.min_duration_s:
        reasons.append(f"measured {window.duration_s:.1f} s, less than the minimum {limits.min_duration_s:.1f} s")
    if stats.measured_s < COVERAGE_FLOOR * window.duration_s:
        reasons.append(f"traffic covered only {stats.measured_s:.1f} s of the {window.duration_s:.1f} s window")
    if stats.requests < limits.min_requests:
        reasons.append(f"{stats.requests} requests, fewer than the minimum {limits.min_requests}")
    planned = stats.scheduled_rps or stats.offered_rps  # a Poisson draw may hold fewer than the nominal rate
    counts = stats.counts
    if counts.dropped or (counts.queued or 0) > SERVER_QUEUED_SHARE * max(1, counts.scheduled):
        reasons.append(f"the server could not keep up: every connection was busy, so {counts.queued or 0} of "
                       f"{counts.scheduled} scheduled requests were sent late and {counts.dropped or 0} never "
                       "(raise max_in_flight to queue them at the server instead, or lower the rate)")
    elif planned and stats.achieved_rps < ACHIEVED_RATE_FLOOR * planned:
        held = "offered" if stats.scheduled_rps is None else "scheduled"
        reasons.append(f"achieved {stats.achieved_rps:.1f} req/s, below {ACHIEVED_RATE_FLOOR:.0%} of the "
                       f"{held} {planned:.1f} (generator fell behind its schedule)")
    if generator_cpu_max is not None and generator_cpu_max > GENERATOR_CPU_LIMIT:
        reasons.append(f"load generator CPU reached {generator_cpu_max:.0f}% (limit {GENERATOR_CPU_LIMIT:.0f}%)")
    if stats.error_rate > limits.max_error_rate:
        reasons.append(f"error rate {stats.error_rate:.2%} over the limit {limits.max_error_rate:.2%}")
    return reasons
