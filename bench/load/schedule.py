"""Open-loop arrival schedules: when each request must leave, decided before the test starts.

Because send times are fixed in advance, a server that stalls cannot slow the generator down and so
cannot hide its stall (coordinated omission): latency is counted from these scheduled times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.protocols import Array

Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class RateStage:
    duration_s: float
    rate: float  # requests per second during this stage


def arrival_offsets(stages: Sequence[RateStage], arrival: Arrival, seed: int = 0) -> Array:
    """Send times in seconds from the start, for piecewise-constant rates.

    constant: evenly spaced, 1/rate apart. poisson: exponential gaps (memoryless arrivals, as from many
    independent clients), generated per stage from a seeded generator so every generator process that
    computes the schedule gets the same one.
    """
    rng = np.random.default_rng(seed)
    chunks: list[Array] = []
    start = 0.0
    for stage in stages:
        if stage.duration_s <= 0 or stage.rate <= 0:
            raise ValueError(f"stage needs positive duration and rate, got {stage}")
        if arrival == "constant":
            count = int(np.floor(stage.duration_s * stage.rate + 1e-9))
            times = np.arange(count, dtype=np.float64) / stage.rate
        else:
            expected = stage.duration_s * stage.rate
            gaps = rng.exponential(1.0 / stage.rate, size=int(expected + 10 * np.sqrt(expected) + 10))
            times = np.cumsum(gaps)  # a Poisson process: the first arrival too is an exponential gap in
            while times[-1] < stage.duration_s:  # astronomically rare: extend rather than truncate
                more = rng.exponential(1.0 / stage.rate, size=len(gaps))
                times = np.concatenate([times, times[-1] + np.cumsum(more)])
            times = times[times < stage.duration_s]
        chunks.append(start + times)
        start += stage.duration_s
    return np.concatenate(chunks) if chunks else np.zeros(0)


def slots_for_worker(offsets: Array, worker: int, workers: int) -> Array:
    """Interleave the schedule across generator processes: worker w sends requests w, w+P, w+2P..."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} outside 0..{workers - 1}")
    return offsets[worker::workers]
