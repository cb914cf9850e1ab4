"""Open-loop arrival schedules: when each request must leave, decided before the test starts.

Because send times are fixed in advance, a server that stalls cannot slow the generator down and so
cannot hide its stall (coordinated omission): latency is counted from these scheduled times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.load.trace import read_trace
from bench.protocols import Array

Arrival = Literal["constant", "poisson", "gamma", "trace"]


@dataclass(frozen=True)
class ArrivalProcess:
    """How requests arrive at a stage's rate. constant: evenly spaced; poisson: exponential gaps (many
    independent clients); gamma: gamma-distributed gaps with the coefficient of variation `cv` (above 1:
    bursts and lulls, as real traffic has; 1 is Poisson); trace: a recorded file's arrivals (bench.load.trace),
    replayed at the stage's rate over the trace's mean rate (its time scale) and looped."""

    kind: Arrival = "constant"
    cv: float = 1.0
    trace_file: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "trace" and not self.trace_file:
            raise ValueError("trace arrivals need the trace's file")
        if not self.cv > 0:
            raise ValueError(f"a coefficient of variation must be positive, got {self.cv}")

    @property
    def trace_sha256(self) -> str | None:
        return read_trace(self.trace_file).sha256 if self.trace_file else None

    @property
    def seeded(self) -> bool:
        """Whether the seed draws these arrivals (a constant or recorded schedule is the same for any seed)."""
        return self.kind in ("poisson", "gamma")


CONSTANT = ArrivalProcess()
POISSON = ArrivalProcess("poisson")


@dataclass(frozen=True)
class RateStage:
    duration_s: float
    rate: float  # requests per second during this stage


CHUNK = 65_536  # arrivals generated at a time: a schedule of any length costs a generator a constant ~1 MB
WARMUP_STREAM = 1  # the warm-up's arrivals come from the seed's second stream: the window's from its own


def split_stages(stages: Sequence[RateStage], warmup_s: float) -> tuple[list[RateStage], list[RateStage]]:
    """The stages cut at warmup_s: those of the warm-up and those of the measured window."""
    warm: list[RateStage] = []
    window: list[RateStage] = []
    elapsed = 0.0
    for stage in stages:
        before = min(stage.duration_s, max(0.0, warmup_s - elapsed))
        if before > 0:
            warm.append(RateStage(before, stage.rate))
        if stage.duration_s - before > 1e-12:
            window.append(RateStage(stage.duration_s - before, stage.rate))
        elapsed += stage.duration_s
    return warm, window


def schedule_chunks(stages: Sequence[RateStage], arrival: ArrivalProcess, seed: int = 0, warmup_s: float = 0.0,
                    chunk: int = CHUNK) -> Iterator[Array]:
    """Send times from the start (warm-up included), lazily. The measured window's arrivals are drawn from
    the seed alone, from the window's own start, and the warm-up's from another stream of the same seed: so
    every runtime measured at a load point with the same seed gets the same arrivals in its window, whatever
    its warm-up (a runtime.yaml may ask for a longer one). A trace's window replays it from its start, and
    the warm-up the stretch just before (its end, looped)."""
    for stage in stages:
        if stage.duration_s <= 0 or stage.rate <= 0:
            raise ValueError(f"stage needs positive duration and rate, got {stage}")
    warm, window = split_stages(stages, warmup_s)
    if arrival.kind == "trace":
        assert arrival.trace_file is not None
        period = read_trace(arrival.trace_file).period_s
        warm_trace_s = sum(stage.duration_s * _time_scale(stage, arrival) for stage in warm)
        if warm:
            yield from _trace_chunks(warm, arrival, (-warm_trace_s) % period, chunk)
        for times in _trace_chunks(window, arrival, 0.0, chunk):
            yield times + warmup_s
        return
    if warm:
        yield from _chunks(warm, arrival, [seed, WARMUP_STREAM], chunk)
    for times in _chunks(window, arrival, seed, chunk):
        yield times + warmup_s


def arrival_chunks(stages: Sequence[RateStage], arrival: ArrivalProcess, seed: int = 0,
                   chunk: int = CHUNK) -> Iterator[Array]:
    """One draw over the stages from their start (schedule_chunks without a warm-up)."""
    return schedule_chunks(stages, arrival, seed, 0.0, chunk)


def _time_scale(stage: RateStage, arrival: ArrivalProcess) -> float:
    """How much faster than recorded a trace plays at the stage's rate."""
    assert arrival.trace_file is not None
    return stage.rate / read_trace(arrival.trace_file).mean_rps


def _trace_chunks(stages: Sequence[RateStage], arrival: ArrivalProcess, trace_start_s: float,
                  chunk: int) -> Iterator[Array]:
    """The trace's arrivals from trace time `trace_start_s` on, looped, each stage playing it at its own
    time scale: a stage of d seconds at scale s plays d * s seconds of the trace."""
    assert arrival.trace_file is not None
    trace = read_trace(arrival.trace_file)
    start, position = 0.0, trace_start_s
    for stage in stages:
        scale = _time_scale(stage, arrival)
        end = position + stage.duration_s * scale
        for offsets in trace.between(position, end, chunk):
            yield start + (offsets - position) / scale
        start, position = start + stage.duration_s, end


def _gaps(rng: np.random.Generator, arrival: ArrivalProcess, rate: float, size: int) -> Array:
    """`size` gaps with mean 1/rate: exponential (Poisson), or gamma with shape 1/cv^2 (its CV is cv)."""
    if arrival.kind == "gamma":
        shape = 1.0 / (arrival.cv * arrival.cv)
        return rng.gamma(shape, 1.0 / (rate * shape), size=size)
    return rng.exponential(1.0 / rate, size=size)


def _chunks(stages: Sequence[RateStage], arrival: ArrivalProcess, seed: int | list[int],
            chunk: int) -> Iterator[Array]:
    """Send times in seconds from the start, for piecewise-constant rates, a chunk at a time (lazily, so an
    hour at thousands of requests per second is never held whole).

    constant: evenly spaced, 1/rate apart. poisson and gamma: random gaps from one seeded generator, so every
    generator process that computes the schedule gets the same one. Each such stage draws the same number of
    gaps however it is chunked (its expected count plus ten standard deviations, more only if that falls
    short), so the schedule does not depend on the chunk size.
    """
    rng = np.random.default_rng(seed)
    start = 0.0
    for stage in stages:
        if stage.duration_s <= 0 or stage.rate <= 0:
            raise ValueError(f"stage needs positive duration and rate, got {stage}")
        if arrival.kind == "constant":
            count = int(np.floor(stage.duration_s * stage.rate + 1e-9))
            for first in range(0, count, chunk):
                yield start + np.arange(first, min(count, first + chunk), dtype=np.float64) / stage.rate
        else:
            expected = stage.duration_s * stage.rate
            spread = arrival.cv if arrival.kind == "gamma" else 1.0  # a renewal count's sd: cv * sqrt(n)
            planned = int(expected + 10 * spread * np.sqrt(expected) + 10)
            elapsed, drawn = 0.0, 0
            while drawn < planned or elapsed < stage.duration_s:  # astronomically rare: extend, never truncate
                size = min(chunk, planned - drawn) if drawn < planned else min(chunk, planned)
                gaps = _gaps(rng, arrival, stage.rate, size)
                times = np.cumsum(np.concatenate(([elapsed], gaps)))[1:]  # summed in order: chunking changes no bit
                drawn += size
                elapsed = float(times[-1])
                kept = times[times < stage.duration_s]
                if len(kept):
                    yield start + kept
        start += stage.duration_s


def arrival_offsets(stages: Sequence[RateStage], arrival: ArrivalProcess, seed: int = 0,
                    warmup_s: float = 0.0) -> Array:
    """The whole schedule at once (for short ones: tests, the count a window holds)."""
    chunks = list(schedule_chunks(stages, arrival, seed, warmup_s))
    return np.concatenate(chunks) if chunks else np.zeros(0)


def slots_for_worker(offsets: Array, worker: int, workers: int) -> Array:
    """Interleave the schedule across generator processes: worker w sends requests w, w+P, w+2P..."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} outside 0..{workers - 1}")
    return offsets[worker::workers]


def worker_slots(stages: Sequence[RateStage], arrival: ArrivalProcess, seed: int, worker: int, workers: int,
                 chunk: int = CHUNK, warmup_s: float = 0.0) -> Iterator[float]:
    """Worker w's send times, lazily: requests w, w+P, w+2P... of the whole schedule."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} outside 0..{workers - 1}")
    seen = 0
    for times in schedule_chunks(stages, arrival, seed, warmup_s, chunk):
        first = (worker - seen) % workers
        yield from times[first::workers].tolist()
        seen += len(times)


def count_between(stages: Sequence[RateStage], arrival: ArrivalProcess, seed: int, start: float, end: float,
                  warmup_s: float = 0.0) -> int:
    """How many send times fall in [start, end), without holding the schedule."""
    return sum(int(((times >= start) & (times < end)).sum())
               for times in schedule_chunks(stages, arrival, seed, warmup_s))
