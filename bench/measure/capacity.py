"""Capacity search: the highest open-loop rate at which a cell is valid and its SLO holds, with an interval.

The search is a generator: it yields the next rate to probe and receives that probe's outcome, so the
same logic drives real servers (bench.measure.run) and simulated ones (the unit tests). It brackets by
doubling (or halving) from a start rate until one probe passes and a neighbouring one fails, bisects
geometrically until the bracket is narrower than the resolution (5% by default), then probes both ends
of the bracket again (`repeats` times, each probe an independent draw of the arrivals).

The estimate. One probe's verdict rests on its percentile (p99), an estimate from a few hundred requests,
and near the knee a server may pass one draw and fail the next (a stall lands in one window and not in
another). The percentiles of repeated probes at one rate are averaged (a window with a stall pulls the mean
up, as it would the percentile of one longer window), and enter a monotone fit of log(percentile) against
rate (pool-adjacent-violators: latency cannot fall as load rises); the
capacity is where that fit crosses the SLO, interpolated between probed rates. A probe that failed for a
reason other than latency (invalid, errors, a collapse) counts as infinitely slow.

The interval is read off the probed rates, never interpolated: `ci_low` is the highest rate below which
every probe passed clearly (its percentile's whole 95% bootstrap interval within the SLO), `ci_high` the
lowest rate above which every probe failed clearly (the whole interval beyond it, or invalid). Between
them the data cannot tell a pass from a failure. `ci_high` is None (open) when no probed rate failed
every time; both can be None. The interval covers sampling within and between probes, not the bias of
short windows (a p99 over 15 s reads a few percent low against a long run), which longer runs reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal

Limit = Literal["generator", "max rate", "min rate"]


@dataclass(frozen=True)
class SearchSettings:
    start_rps: float = 50.0
    resolution: float = 0.05  # stop bisecting when high / low - 1 is at most this
    min_rps: float = 1.0
    max_rps: float = 4000.0  # what the generator can drive (bench calibrate measures it)
    repeats: int = 2  # extra probes at each end of the final bracket
    slo_ms: float = 50.0  # the SLO the probes' percentile is held to


@dataclass(frozen=True)
class Outcome:
    """What the search needs from one probe (a full measured cell)."""

    rate: float
    passed: bool  # valid and within the SLO
    value_ms: float = math.inf  # the SLO's percentile; inf when the probe failed for another reason
    low_ms: float | None = None  # its 95% interval, when one was computed
    high_ms: float | None = None
    generator_limited: bool = False  # the load generator, not the server, could not keep up
    label: str = ""


@dataclass(frozen=True)
class Capacity:
    capacity_rps: float | None  # None: not even the lowest rate passed
    ci_low: float | None
    ci_high: float | None
    limited_by: Limit | None  # the search stopped at a limit rather than at a knee
    outcomes: tuple[Outcome, ...]


def rounded(rate: float) -> float:
    """Three significant figures: probe labels stay readable, and the search reproducible."""
    return float(f"{rate:.3g}")


Search = Generator[float, Outcome, Capacity]


Probe = Callable[[float], Generator[float, Outcome, Outcome]]


def _step(probe: Probe, rate: float, low: float | None,
          high: float | None) -> Generator[float, Outcome, tuple[float, float | None, float | None, Limit | None]]:
    """Probe one rate; it becomes the new low end (passed) or high end (failed) of the bracket."""
    outcome = yield from probe(rate)
    if outcome.generator_limited:
        return rate, low, high, "generator"
    return (rate, rate, high, None) if outcome.passed else (rate, low, rate, None)


MAX_RESUMES = 2  # how often a bracket whose failing end passes on its repeats is searched again above it


def _bracket(probe: Probe, settings: SearchSettings, rate: float, low: float | None, high: float | None
             ) -> Generator[float, Outcome, tuple[float, float | None, float | None, Limit | None]]:
    """Double from a passing rate until a failure, or halve from a failing one until a pass; each stops at
    its limit."""
    step, edge = (2.0, settings.max_rps) if high is None else (0.5, settings.min_rps)
    edge_limit: Limit = "max rate" if high is None else "min rate"
    limit: Limit | None = None
    while (low is None) != (high is None) and limit is None:
        if rate == edge:
            return rate, low, high, edge_limit
        next_rate = min(rate * step, edge) if step > 1 else max(rate * step, edge)
        rate, low, high, limit = yield from _step(probe, next_rate, low, high)
    return rate, low, high, limit


def search(settings: SearchSettings) -> Search:
    """Yield rates to probe; send each probe's Outcome back; the return value is the Capacity.

    A bracket's failing end is probed again with the repeats; when every repeat passes clearly (its whole
    interval within the SLO: the failure was one draw's stall, say the very first probe's), the bracket was
    wrong, and the search goes on above it, at most MAX_RESUMES times."""
    outcomes: list[Outcome] = []

    def probe(rate: float) -> Generator[float, Outcome, Outcome]:
        outcome = yield rounded(rate)
        outcomes.append(outcome)
        return outcome

    rate = min(max(settings.start_rps, settings.min_rps), settings.max_rps)
    first = yield from probe(rate)
    if first.generator_limited:
        return Capacity(None, None, None, "generator", tuple(outcomes))
    low: float | None = rate if first.passed else None
    high: float | None = None if first.passed else rate
    limit: Limit | None = None
    for _ in range(1 + MAX_RESUMES):
        rate, low, high, limit = yield from _bracket(probe, settings, rate, low, high)
        if low is None or high is None or limit is not None:
            break
        while high / low - 1 > settings.resolution and limit is None:
            middle = rounded(math.sqrt(low * high))
            if middle in (rounded(low), rounded(high)):
                break  # three significant figures cannot split it further
            _, low, high, limit = yield from _step(probe, middle, low, high)
            assert low is not None and high is not None  # a step only ever narrows a full bracket
        for _ in range(settings.repeats):
            for again in (low, high):
                yield from probe(again)
        repeats_at_high = [o for o in outcomes if rounded(o.rate) == rounded(high)][1:]
        if limit is not None or not repeats_at_high or not _clear_pass(repeats_at_high, settings.slo_ms):
            break
        rate, low, high = high, high, None  # its failure did not hold up: search on above it
    return summarise(outcomes, limit, settings.slo_ms)


def monotone(values: list[float], weights: list[int]) -> list[float]:
    """Pool-adjacent-violators: the non-decreasing sequence closest to values (weighted least squares)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([value, float(weight), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            last, before = blocks.pop(), blocks.pop()
            total = before[1] + last[1]
            mean = (before[0] * before[1] + last[0] * last[1]) / total if math.isfinite(before[0] + last[0]) \
                else max(before[0], last[0])
            blocks.append([mean, total, before[2] + last[2]])
    fitted: list[float] = []
    for mean, _, count in blocks:
        fitted.extend([mean] * int(count))
    return fitted


def crossing(rates: list[float], values: list[float], limit: float) -> tuple[float | None, bool]:
    """Where a non-decreasing curve through (rate, value) crosses limit, interpolated in log(value), and
    whether it does: (the highest rate, False) if it never does, (None, True) if it starts over the limit."""
    if not rates or values[0] > limit:
        return None, True
    for index in range(1, len(rates)):
        if values[index] > limit:
            low, high = max(values[index - 1], 1e-9), values[index]
            if not math.isfinite(high) or high <= low:
                return rates[index - 1], True
            share = (math.log(limit) - math.log(low)) / (math.log(high) - math.log(low))
            return rates[index - 1] + share * (rates[index] - rates[index - 1]), True
    return rates[-1], False


def _clear_pass(outcomes: list[Outcome], slo_ms: float) -> bool:
    return all(o.passed and o.high_ms is not None and o.high_ms <= slo_ms for o in outcomes)


def _clear_fail(outcomes: list[Outcome], slo_ms: float) -> bool:
    return all(not o.passed and (not math.isfinite(o.value_ms) or (o.low_ms is not None and o.low_ms > slo_ms))
               for o in outcomes)


def summarise(outcomes: list[Outcome], limit: Limit | None, slo_ms: float) -> Capacity:
    """Capacity and interval from every probe made (see the module docstring)."""
    by_rate: dict[float, list[Outcome]] = {}
    for outcome in outcomes:
        by_rate.setdefault(rounded(outcome.rate), []).append(outcome)
    rates = sorted(by_rate)
    # repeats pooled: the mean of their percentiles, which a window with a stall pulls up as it would the
    # percentile of a longer measurement (a mean of logarithms would hide it)
    pooled = [sum(o.value_ms for o in by_rate[rate]) / len(by_rate[rate]) for rate in rates]
    logs = [math.log(value) if math.isfinite(value) and value > 0 else math.inf for value in pooled]
    fitted = monotone(logs, [len(by_rate[rate]) for rate in rates])
    capacity, _ = crossing(rates, [math.exp(v) if math.isfinite(v) else math.inf for v in fitted], slo_ms)
    ci_low = None
    for rate in rates:
        if not _clear_pass(by_rate[rate], slo_ms):
            break
        ci_low = rate
    ci_high = None
    for rate in reversed(rates):
        if not _clear_fail(by_rate[rate], slo_ms):
            break
        ci_high = rate
    return Capacity(_optional(capacity), ci_low, ci_high, limit, tuple(outcomes))


def _optional(rate: float | None) -> float | None:
    return None if rate is None else rounded(rate)


def run_search(settings: SearchSettings, measure: Callable[[float], Outcome]) -> Capacity:
    """Drive a search with a probe function (simulations; the run orchestrator drives it step by step)."""
    steps = search(settings)
    rate = next(steps)
    while True:
        try:
            rate = steps.send(measure(rate))
        except StopIteration as done:
            result: Capacity = done.value
            return result
