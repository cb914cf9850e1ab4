"""The test behind every verdict: a (paired) block bootstrap over whole seconds of two runs.

See bench.compare.gate for why whole seconds are resampled, and for the decision rule built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.results.baseline import CellSamples
from bench.stats import PERCENTILES

# +1: a rise is a regression (latency, ms); -1: a fall is a regression (throughput, req/s)
METRICS: dict[str, int] = {"p50": 1, "p90": 1, "p95": 1, "p99": 1, "p999": 1, "mean": 1, "throughput": -1}
LATENCY_METRICS = ("p50", "p90", "p95", "p99", "p999", "mean")
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
MIN_BLOCKS = 3  # seconds per side: fewer cannot show how a figure varies over a run
MIN_LATENCIES = 20

BETTER, WORSE, UNCHANGED = "better", "worse", "unchanged"
NOT_COMPARABLE, INVALID, MISSING = "not comparable", "invalid", "missing"
UNDETERMINED = (NOT_COMPARABLE, INVALID)
PASS, REGRESSION, UNDECIDED = "pass", "regression", "undetermined"
EXIT_CODES = {PASS: 0, REGRESSION: 1, UNDECIDED: 2}
METHOD = (f"block bootstrap: whole seconds of each run resampled {RESAMPLES} times (seeded), "
          f"{CONFIDENCE:.0%} percentile interval of the relative change; worse or better only when the whole "
          "interval lies beyond the threshold")



def resample_latency(blocks: list[np.ndarray[Any, Any]], rng: np.random.Generator,
                     resamples: int = RESAMPLES) -> np.ndarray[Any, Any]:
    """Block bootstrap: per resample, as many seconds as the run had, drawn with replacement; columns are
    LATENCY_METRICS (numpy's linear-interpolation percentiles, as bench.stats reports them)."""
    quantiles = [PERCENTILES[name] for name in LATENCY_METRICS if name in PERCENTILES]
    picks = rng.integers(0, len(blocks), size=(resamples, len(blocks)))
    out = np.empty((resamples, len(quantiles) + 1))
    for row, chosen in zip(out, picks, strict=True):
        values = np.concatenate([blocks[i] for i in chosen])
        row[:-1] = np.percentile(values, quantiles)
        row[-1] = values.mean()
    return out


def resample_means(values: np.ndarray[Any, Any], rng: np.random.Generator,
                   resamples: int = RESAMPLES) -> np.ndarray[Any, Any]:
    """Bootstrap of the mean of per-second values (one value per block)."""
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means: np.ndarray[Any, Any] = values[picks].mean(axis=1)
    return means


@dataclass(frozen=True)
class Pairing:
    """Two runs measured side by side: which of their seconds were the same wall-clock seconds."""

    base_first: int  # the baseline's second that coincides with the current run's `current_first`
    current_first: int
    seconds: int  # seconds both measured


def side_by_side(base: CellSamples | None, cur: CellSamples | None) -> Pairing | None:
    """The common wall-clock seconds of two runs whose windows overlap by at least MIN_BLOCKS seconds;
    None for runs made at different times (or recorded before start times were kept)."""
    if base is None or cur is None or base.start_s is None or cur.start_s is None:
        return None
    shift = round(cur.start_s - base.start_s)  # the current run's second 0 is the baseline's second `shift`
    length = max(len(base.latency_us), len(base.completed_per_s))
    other = max(len(cur.latency_us), len(cur.completed_per_s))
    base_first, current_first = max(shift, 0), max(-shift, 0)
    seconds = min(length - base_first, other - current_first)
    return Pairing(base_first, current_first, seconds) if seconds >= MIN_BLOCKS else None


def block_of(samples: CellSamples, second: int) -> np.ndarray[Any, Any]:
    return samples.latency_us[second] if 0 <= second < len(samples.latency_us) else np.empty(0, dtype=np.int64)


def paired_view(samples: CellSamples, first: int, keep: list[int], counted: int) -> CellSamples:
    """One side restricted to the common seconds, in wall-clock order: latency blocks of the seconds in
    `keep` (offsets into the common range where both sides have latencies), completions of the first
    `counted` common seconds."""
    blocks = [block_of(samples, first + k) for k in keep]
    counts = samples.completed_per_s[first:first + counted]
    return CellSamples(blocks, counts, sum(len(b) for b in blocks), samples.successful, samples.start_s)


@dataclass(frozen=True)
class Resampled:
    """Bootstrap distributions of one side's metrics, or why a metric cannot be tested."""

    distributions: dict[str, np.ndarray[Any, Any]]
    untestable: dict[str, str]
    blocks: int
    latencies: int
    seconds: int


def resampled(samples: CellSamples | None, stream: int, why_none: str | None) -> Resampled:
    """One side's bootstrap on its own seeded streams (latency, throughput). Two sides given the same
    stream and the same number of seconds draw the same seconds: the paired test."""
    if samples is None:
        reason = why_none or "no raw samples"
        return Resampled({}, dict.fromkeys(METRICS, reason), 0, 0, 0)
    distributions: dict[str, np.ndarray[Any, Any]] = {}
    untestable: dict[str, str] = {}
    blocks = [block for block in samples.latency_us if len(block)]
    if len(blocks) < MIN_BLOCKS or samples.kept < MIN_LATENCIES:
        untestable.update(dict.fromkeys(LATENCY_METRICS, f"{samples.kept} latencies over {len(blocks)} s: too few "
                                        f"to test (at least {MIN_LATENCIES} over {MIN_BLOCKS} s)"))
    else:
        table = resample_latency(blocks, np.random.default_rng([SEED, stream, 0]))
        distributions.update({name: table[:, column] for column, name in enumerate(LATENCY_METRICS)})
    seconds = len(samples.completed_per_s)
    if seconds < MIN_BLOCKS:
        untestable["throughput"] = f"{seconds} whole seconds measured: too few to test (at least {MIN_BLOCKS})"
    else:
        distributions["throughput"] = resample_means(samples.completed_per_s.astype(np.float64),
                                                     np.random.default_rng([SEED, stream, 1]))
    return Resampled(distributions, untestable, len(blocks), samples.kept, seconds)


@dataclass(frozen=True)
class MetricResult:
    metric: str
    verdict: str
    baseline: float | None
    current: float | None
    change: float | None  # relative, from the figures the runs reported
    ci: tuple[float, float] | None  # relative change, bootstrap interval
    threshold: float
    test: str
    note: str = ""


def judge(metric: str, threshold: float, baseline: float | None, current: float | None, base: Resampled,
          cur: Resampled, paired: bool = False) -> MetricResult:
    """One metric of one matched, valid, comparable pair of cells."""
    if baseline is None or current is None or baseline <= 0:
        return MetricResult(metric, NOT_COMPARABLE, baseline, current, None, None, threshold, "-",
                            "no figure to compare")
    change = current / baseline - 1.0
    reason = base.untestable.get(metric) or cur.untestable.get(metric)
    base_dist, cur_dist = base.distributions.get(metric), cur.distributions.get(metric)
    if reason or base_dist is None or cur_dist is None:
        side = "baseline" if metric in base.untestable else "current"
        return MetricResult(metric, NOT_COMPARABLE, baseline, current, change, None, threshold, "-",
                            f"{side}: {reason or 'no test'}")
    if paired:
        seconds = base.seconds if metric == "throughput" else base.blocks
        test = f"paired block bootstrap (side by side), {seconds} common s"
        if metric != "throughput":
            test += f", {base.latencies}+{cur.latencies} req"
    elif metric == "throughput":
        test = f"block bootstrap, {base.seconds}+{cur.seconds} s"
    else:
        test = f"block bootstrap, {base.blocks}+{cur.blocks} s, {base.latencies}+{cur.latencies} req"
    if (base_dist <= 0).any():
        return MetricResult(metric, NOT_COMPARABLE, baseline, current, change, None, threshold, test,
                            "baseline resamples reach zero")
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = (float(v) for v in np.percentile(cur_dist / base_dist - 1.0, [tail, 100.0 - tail]))
    direction, margin = METRICS[metric], abs(threshold)
    worst_case, best_case = (low, high) if direction > 0 else (-high, -low)  # in the regression's direction
    if worst_case > margin:
        verdict, note = WORSE, ""
    elif best_case < -margin:
        verdict, note = BETTER, ""
    else:
        verdict = UNCHANGED
        if abs(change) > margin:
            note = "beyond the threshold, but not significantly"
        elif low > 0 or high < 0:
            note = "significant, within the threshold"
        else:
            note = ""
    return MetricResult(metric, verdict, baseline, current, change, (low, high), threshold, test, note)
