"""Statistics from raw samples: percentiles, confidence intervals, per-second series, validity.

Everything is computed from the raw per-request samples after the warm-up window, never from Locust's
bucketed statistics (which round to about two significant digits and whole milliseconds).
Knows nothing about deployments: it sees a sample table, a measurement window and the scenario's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.config import PERCENTILE_LEVELS
from bench.order_statistics import SortedRuns, scratch_folder
from bench.protocols import Array
from bench.results.sample_file import SampleSource, as_source
from bench.results.samples import BOUNDARY_TOLERANCE_S, is_dropped, is_success
from bench.results.schema import Cell, Counts, Interval, Latency, LatencyIntervals, Second

PERCENTILES = PERCENTILE_LEVELS
GENERATOR_CPU_LIMIT = 90.0
ACHIEVED_RATE_FLOOR = 0.95
SERVER_QUEUED_SHARE = 0.01  # more requests than this waited for a free connection: the server fell behind
COVERAGE_FLOOR = 0.9  # answered traffic must span 90% of the window (a crash or stop ends it early)
# The generator's own lateness (sends after their scheduled time while a connection was free) is counted in the
# latency. Beside a latency p50, its p50 is worth a warning above LATENESS_WARN_SHARE and makes the cell invalid
# above LATENESS_INVALID_SHARE: the figure then measures the generator. Below LATENESS_FLOOR_MS it is noise.
LATENESS_WARN_SHARE = 0.1
LATENESS_INVALID_SHARE = 0.25
LATENESS_FLOOR_MS = 0.05


def latency_summary(latencies_ms: Array) -> Latency:
    """p50..p99.9, max and mean (numpy's linear interpolation between order statistics)."""
    if len(latencies_ms) == 0:
        return Latency()
    values = np.percentile(latencies_ms, list(PERCENTILES.values()))
    return Latency(**{name: float(v) for name, v in zip(PERCENTILES, values, strict=True)},
                   max=float(np.max(latencies_ms)), mean=float(np.mean(latencies_ms)))


def quantile_interval(runs: SortedRuns, percentile: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of one percentile: the order statistics x_(l) and x_(u) with
    l and u the binomial(n, q) quantiles of the confidence's tails, so P(x_(l) <= true percentile <= x_(u))
    >= confidence for independent samples. What the percentile bootstrap approximates, computed exactly
    from two order statistics instead of 400 resamples of the whole cell; None with fewer than 20 samples."""
    from scipy.stats import binom  # here, not at import: scipy.stats costs every command 1.5 s, a usage error too

    n = runs.count
    if n < 20:
        return None
    tail = (1 - confidence) / 2
    q = percentile / 100.0
    low_rank = int(binom.ppf(tail, n, q))  # 1-based order statistics
    high_rank = int(binom.ppf(1 - tail, n, q)) + 1
    low, high = runs.select([min(max(low_rank, 1), n) - 1, min(max(high_rank, 1), n) - 1])
    return float(low), float(high)


def sample_interval(values: Array, percentile: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """quantile_interval of values held in memory."""
    with SortedRuns(scratch_folder()) as runs:
        runs.add(np.asarray(values, dtype=np.float64))
        return quantile_interval(runs, percentile, confidence)


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



def in_window(scheduled: pd.Series, window: Window) -> pd.Series:
    """Which requests were scheduled inside the window (warm-up before it, drain after it)."""
    return (scheduled >= window.start - BOUNDARY_TOLERANCE_S) & (scheduled < window.end - BOUNDARY_TOLERANCE_S)


def measured(samples: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Requests scheduled inside the window: warm-up requests are discarded, late ones kept."""
    return samples.loc[in_window(samples["scheduled"], window)]


SUMMARY_COLUMNS = ["scheduled", "sent", "latency_ms", "service_ms", "status", "queued"]


@dataclass
class _Tally:
    """What one pass over the batches adds up; the distributions go to sorted runs beside it."""

    scheduled: int = 0
    dropped: int = 0
    completed: int = 0
    failed: int = 0
    queued: int | None = None
    sent_inside: int = 0
    completed_inside: int = 0
    within_slo: int = 0
    last_done: float | None = None


def summarize(samples: SampleSource | pd.DataFrame, window: Window, limits: Limits, offered_rps: float | None,
              scheduled_rps: float | None = None) -> CellStats:
    """The figures of one cell, over every request scheduled inside the window. Latency is measured from
    the scheduled send time and its percentiles include failures (at the latency they failed after) and
    drops (at the end of the run); the success-only percentiles are kept beside them. Service time is
    from the actual send time, of successful requests.

    One pass over the samples in batches (bounded memory at any run length): counts are added up, the four
    distributions are written to sorted runs, and their exact percentiles are selected afterwards."""
    source = as_source(samples)
    scratch = scratch_folder()
    tally = _Tally(queued=0 if "queued" in source.columns else None)
    seconds = _Seconds(window.start, limits.slo_ms)
    with SortedRuns(scratch) as every, SortedRuns(scratch) as ok_latency, SortedRuns(scratch) as service, \
            SortedRuns(scratch) as lateness:
        for batch in source.batches(SUMMARY_COLUMNS):
            _tally_batch(batch, window, limits.slo_ms, tally, every, ok_latency, service, lateness)
            seconds.add(batch)
        latency = _latency_of(every)
        duration = window.duration_s
        slo_value = latency.percentile(limits.slo_percentile)
        return CellStats(
            counts=Counts(scheduled=tally.scheduled, sent=tally.scheduled - tally.dropped, completed=tally.completed,
                          failed=tally.failed, dropped=tally.dropped,
                          queued=None if tally.queued is None else tally.queued - tally.dropped),
            offered_rps=offered_rps,
            scheduled_rps=scheduled_rps,
            achieved_rps=tally.sent_inside / duration,
            throughput_rps=tally.completed_inside / duration,
            goodput_rps=tally.within_slo / duration,
            latency=latency,
            latency_ok=_latency_of(ok_latency),
            latency_ci=LatencyIntervals(p50=_interval(quantile_interval(every, PERCENTILES["p50"])),
                                        p99=_interval(quantile_interval(every, PERCENTILES["p99"]))),
            service=_latency_of(service),
            lateness=_latency_of(lateness),
            slo_met=None if slo_value is None else slo_value <= limits.slo_ms,
            measured_s=0.0 if tally.last_done is None else max(0.0, min(window.end, tally.last_done) - window.start),
            timeseries=seconds.finish(),
        )


def _tally_batch(batch: pd.DataFrame, window: Window, slo_ms: float, tally: _Tally, every: SortedRuns,
                 ok_latency: SortedRuns, service: SortedRuns, lateness: SortedRuns) -> None:
    inside = in_window(batch["scheduled"], window).to_numpy()
    status = batch["status"]
    success = is_success(status).to_numpy()
    dropped = is_dropped(status).to_numpy()
    latency = batch["latency_ms"].to_numpy(dtype=np.float64)
    sent = batch["sent"].to_numpy(dtype=np.float64)
    service_ms = batch["service_ms"].to_numpy(dtype=np.float64)
    ok_inside = inside & success
    tally.scheduled += int(inside.sum())
    tally.dropped += int((inside & dropped).sum())
    tally.completed += int(ok_inside.sum())
    tally.failed += int((inside & ~success & ~dropped).sum())
    if tally.queued is not None:
        tally.queued += int(batch["queued"].to_numpy()[inside].sum())
    tally.sent_inside += int(((sent >= window.start) & (sent < window.end)).sum())
    # whatever they were scheduled for, as for the achieved rate: an overloaded server spends the window on
    # the warm-up's backlog, and its throughput is still what it completed in the window
    done = sent + service_ms / 1000.0
    tally.completed_inside += int((success & (done >= window.start) & (done < window.end)).sum())
    tally.within_slo += int((latency[ok_inside] <= slo_ms).sum())
    finished = done[inside & ~np.isnan(done)]  # how far traffic reached: a crash or a stop ends it early
    if len(finished):
        last = float(finished.max())
        tally.last_done = last if tally.last_done is None else max(tally.last_done, last)
    every.add(latency[inside])
    ok_latency.add(latency[ok_inside])
    service.add(service_ms[ok_inside])
    was_sent = inside & ~dropped
    lateness.add((sent[was_sent] - batch["scheduled"].to_numpy(dtype=np.float64)[was_sent]) * 1000.0)


def _latency_of(runs: SortedRuns) -> Latency:
    """latency_summary of the values in sorted runs, selected exactly."""
    if not runs.count:
        return Latency()
    values = runs.percentiles(list(PERCENTILES.values()))
    return Latency(**{name: value for name, value in zip(PERCENTILES, values, strict=True)},
                   max=runs.maximum(), mean=runs.mean)


def _interval(bounds: tuple[float, float] | None) -> Interval | None:
    return None if bounds is None else Interval(low=bounds[0], high=bounds[1])


class _Seconds:
    """Per-second rows built from batches in scheduled order: a second is complete once a later one shows
    up, so only the current second's requests are held."""

    def __init__(self, origin: float, slo_ms: float) -> None:
        self.origin = origin
        self.slo_ms = slo_ms
        self.rows: list[Second] = []
        self.pending: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None
        self.served: dict[int, int] = {}  # successful responses by the second they arrived in

    def add(self, batch: pd.DataFrame) -> None:
        if batch.empty:
            return
        since = batch["scheduled"].to_numpy(dtype=np.float64) - self.origin + BOUNDARY_TOLERANCE_S
        ok, latency = is_success(batch["status"]).to_numpy(), batch["latency_ms"].to_numpy(dtype=np.float64)
        arrived, counts = np.unique(np.floor(since[ok] + latency[ok] / 1000.0).astype(np.int64), return_counts=True)
        for value, count in zip(arrived.tolist(), counts.tolist(), strict=True):
            self.served[value] = self.served.get(value, 0) + count
        parts = (np.floor(since).astype(np.int64), ok, latency)
        if self.pending is not None:
            parts = (np.concatenate([self.pending[0], parts[0]]), np.concatenate([self.pending[1], parts[1]]),
                     np.concatenate([self.pending[2], parts[2]]))
        last = parts[0][-1]
        done = parts[0] < last
        self._emit(parts[0][done], parts[1][done], parts[2][done])
        self.pending = (parts[0][~done], parts[1][~done], parts[2][~done])

    def finish(self) -> list[Second]:
        if self.pending is not None:
            self._emit(*self.pending)
            self.pending = None
        return [row.model_copy(update={"served": self.served.get(row.t, 0)}) for row in self.rows]

    def _emit(self, second: np.ndarray[Any, Any], ok: np.ndarray[Any, Any], latency: np.ndarray[Any, Any]) -> None:
        if not len(second):
            return
        values, starts = np.unique(second, return_index=True)
        for value, begin, end in zip(values, starts, [*starts[1:], len(second)], strict=True):
            every, good = latency[begin:end], ok[begin:end]
            self.rows.append(Second(
                t=int(value), requests=len(every), errors=int((~good).sum()),
                p50_ms=float(np.percentile(every, 50)), p99_ms=float(np.percentile(every, 99)),
                within_slo=int((every[good] <= self.slo_ms).sum()),
            ))


def per_second(samples: SampleSource | pd.DataFrame, origin: float, slo_ms: float) -> list[Second]:
    """One row per second of scheduled time since origin (negative seconds are warm-up): every request
    scheduled in it, those that did not succeed (failed or dropped), the percentiles over all of them, and the
    successful responses that arrived in it (what was served then, against what was offered)."""
    seconds = _Seconds(origin, slo_ms)
    for batch in as_source(samples).batches(["scheduled", "status", "latency_ms"]):
        seconds.add(batch)
    return seconds.finish()


def generator_late(stats: CellStats | Cell) -> float:
    """The generator's lateness p50 as a share of the latency p50 (0 when either is unknown or the lateness is
    below LATENESS_FLOOR_MS); meaningful only where the server kept every connection free (nothing queued)."""
    late, latency = stats.lateness.p50, stats.latency.p50
    if late is None or latency is None or latency <= 0 or late < LATENESS_FLOOR_MS:
        return 0.0
    return late / latency


def server_fell_behind(counts: Counts) -> bool:
    """Every connection was busy when slots came due: some were dropped, or more than SERVER_QUEUED_SHARE
    waited for a connection (the server's pace, not the generator's)."""
    return bool(counts.dropped) or (counts.queued or 0) > SERVER_QUEUED_SHARE * max(1, counts.scheduled)


def generator_limit(loop: str | None, stats: CellStats | Cell, generator_cpu_max: float | None) -> str | None:
    """Why the generator, not the server, set a cell's figures; None when it did not. A closed loop: its CPU
    past GENERATOR_CPU_LIMIT. An open loop waits out each send's last stretch on the CPU, so its CPU reads high
    while it keeps time: it is judged by its lateness, where the server left a connection free for its slots."""
    if loop == "closed":
        if generator_cpu_max is not None and generator_cpu_max > GENERATOR_CPU_LIMIT:
            return f"load generator CPU reached {generator_cpu_max:.0f}% (limit {GENERATOR_CPU_LIMIT:.0f}%)"
        return None
    if server_fell_behind(stats.counts) or generator_late(stats) <= LATENESS_INVALID_SHARE:
        return None
    p99 = "" if stats.lateness.p99 is None else f" (p99 {stats.lateness.p99:.3f} ms)"
    return (f"the generator was late by p50 {stats.lateness.p50:.3f} ms{p99} against a latency p50 of "
            f"{stats.latency.p50:.3f} ms: this measures the generator, not the server (lower the rate per generator "
            "process: generator_processes)")


def invalid_reasons(stats: CellStats, limits: Limits, window: Window, parity_ok: bool,
                    generator_cpu_max: float | None, *, loop: str | None) -> list[str]:
    """Why a cell cannot be trusted; an empty list means valid."""
    reasons = []
    if not parity_ok:
        reasons.append("parity check failed")
    if window.duration_s < limits.min_duration_s:
        reasons.append(f"measured {window.duration_s:.1f} s, less than the minimum {limits.min_duration_s:.1f} s")
    if stats.measured_s < COVERAGE_FLOOR * window.duration_s:
        reasons.append(f"traffic covered only {stats.measured_s:.1f} s of the {window.duration_s:.1f} s window")
    counts = stats.counts
    if counts.scheduled < limits.min_requests:
        reasons.append(f"{counts.scheduled} requests, fewer than the minimum {limits.min_requests}")
    planned = stats.scheduled_rps or stats.offered_rps  # a Poisson draw may hold fewer than the nominal rate
    if server_fell_behind(counts):
        reasons.append(f"the server could not keep up: every connection was busy, so {counts.queued or 0} of "
                       f"{counts.scheduled} scheduled requests were sent late and {counts.dropped or 0} never "
                       "(raise max_in_flight to queue them at the server instead, or lower the rate)")
    elif planned and stats.achieved_rps < ACHIEVED_RATE_FLOOR * planned:
        held = "offered" if stats.scheduled_rps is None else "scheduled"
        reasons.append(f"achieved {stats.achieved_rps:.1f} req/s, below {ACHIEVED_RATE_FLOOR:.0%} of the "
                       f"{held} {planned:.1f} (generator fell behind its schedule)")
    if (limit := generator_limit(loop, stats, generator_cpu_max)) is not None:
        reasons.append(limit)
    if (error_rate := counts.error_rate or 0.0) > limits.max_error_rate:
        reasons.append(f"error rate {error_rate:.2%} over the limit {limits.max_error_rate:.2%}")
    return reasons
