"""`bench run --rounds N`: the rounds of one runtime x model x load point combined, with an interval that
the machine's drift widens rather than hides.

The runtimes are measured in N interleaved rounds, the order rotated each round, so a slow stretch of the
shared machine falls on different runtimes in different rounds instead of deciding one runtime's figure.
The combined figure is the SLO percentile of every round's successful in-window requests pooled; its
interval is a two-level bootstrap: draw the rounds with replacement, then within each drawn round its
seconds with replacement (a second's requests stay together, as drift and stalls keep them), and take the
percentile of what was drawn. With three rounds the rounds themselves are the main source of width, which
is the point: only a difference larger than round-to-round drift separates two runtimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from bench.config import PERCENTILE_LEVELS
from bench.files import inside
from bench.results.samples import is_success
from bench.results.schema import Cell, RoundsRecord

RESAMPLES = 400
T = TypeVar("T")


def seconds_of(samples: pd.DataFrame) -> list[np.ndarray]:
    """A round's successful in-window latencies, grouped by the second they were scheduled in."""
    inside = samples.loc[samples["in_window"] & is_success(samples["status"])] if "in_window" in samples else \
        samples.loc[is_success(samples["status"])]
    if inside.empty:
        return []
    second = np.floor(inside["scheduled"].to_numpy() - inside["scheduled"].min()).astype(int)
    latency = inside["latency_ms"].to_numpy(dtype=np.float64)
    return [latency[second == s] for s in np.unique(second)]


def two_level_interval(rounds: Sequence[list[np.ndarray]], level: float, seed: int = 0,
                       resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """95% interval of the pooled percentile: rounds drawn with replacement, then seconds within each."""
    usable = [seconds for seconds in rounds if seconds]
    if len(usable) < 2:
        return None
    rng = np.random.default_rng(seed)
    estimates = np.empty(resamples)
    for index in range(resamples):
        drawn: list[np.ndarray] = []
        for pick in rng.integers(0, len(usable), len(usable)):
            seconds = usable[pick]
            drawn.extend(seconds[s] for s in rng.integers(0, len(seconds), len(seconds)))
        estimates[index] = np.percentile(np.concatenate(drawn), level)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(low), float(high)


def combine_rounds(cells: Sequence[Cell], folder: Path, percentile: str, seed: int = 0) -> list[RoundsRecord]:
    """One record per runtime x model x label measured in more than one round."""
    level = PERCENTILE_LEVELS[percentile]
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in cells:
        if cell.round is not None:
            groups.setdefault((cell.runtime, cell.model, cell.label), []).append(cell)
    records = []
    for (runtime, model, label), members in groups.items():
        members.sort(key=lambda c: c.round or 0)
        per_round: list[float | None] = []
        rounds: list[list[np.ndarray]] = []
        for cell in members:
            seconds = seconds_of(pd.read_parquet(inside(folder, cell.samples_file, "samples file"))) \
                if cell.samples_file and cell.validity.valid else []
            rounds.append(seconds)
            per_round.append(float(np.percentile(np.concatenate(seconds), level)) if seconds else None)
        pooled = [latency for seconds in rounds for latency in seconds]
        interval = two_level_interval(rounds, level, seed)
        records.append(RoundsRecord(
            runtime=runtime, model=model, label=label, percentile=percentile, rounds=len(members),
            valid_rounds=sum(1 for value in per_round if value is not None),
            estimate_ms=float(np.percentile(np.concatenate(pooled), level)) if pooled else None,
            ci_low_ms=interval[0] if interval else None, ci_high_ms=interval[1] if interval else None,
            per_round_ms=tuple(per_round)))
    return records


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """Round r starts r places further along: each runtime takes each position in turn."""
    shift = round_index % len(items) if items else 0
    return [*items[shift:], *items[:shift]]
