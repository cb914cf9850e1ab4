"""Regression verdicts between two runs: the statistics behind `bench compare`, the CI gate.

Cells are matched by runtime, model, scenario, target, batch size and load label. A matched pair is
compared only when both cells are valid and the runtime's environment fingerprint (CPU model, the
runtime's package versions, the scenario definition) is the same on both sides; otherwise the pair is
reported as invalid or not comparable and never silently passed or failed. Each gated metric then gets a
verdict: better, worse or unchanged, with the relative change, its 95% confidence interval and the test.

The test: a block bootstrap over whole seconds of each run. Latencies within one run are not independent
draws: a machine stall (on a shared VM both CPUs sometimes freeze for 10-300 ms), a GC pause or a burst
of background load delays every request scheduled during it, so one event puts tens of requests in the
tail at once. A test that treats requests as independent (Mann-Whitney U, or a bootstrap of single
requests) counts one stall as tens of pieces of evidence and calls a one-off freeze a significant p99
regression. Resampling whole seconds (Kuensch's block bootstrap) keeps such a cluster together: a stall
confined to one second widens the interval, a slowdown present in every second does not. The bootstrap
needs no assumption about the shape of the distribution (latency is skewed and often multi-modal) and
serves every quantile and the mean alike, where Mann-Whitney is a location test that says nothing about
p99. Throughput goes through the same procedure on the successful completions counted in each second.
Each side is resampled independently (seeded: the same inputs always give the same verdict), 2000 times.

Side by side: when the two runs were measured at the same time (their windows share at least three
wall-clock seconds, as when CI runs the base commit and the pull request together), the same seconds
are drawn on both sides: a paired block bootstrap over the common seconds. On a shared VM the machine's
speed drifts by 10-15% from one 5-second stretch to the next with nothing else running on it; two runs
made at the same time see the same drift, and resampling their seconds together keeps it out of the
interval, as a paired test does, where independent resampling counts it twice. Runs made at different
times cannot be paired: no test can tell their code apart from their machine's drift (see the README).

A regression needs both conditions of the issue at once: the whole 95% interval of the change lies beyond
the threshold, i.e. the change exceeds the threshold and does so significantly (a one-sided test at 2.5%
of "the change is at most the threshold"). A large change with a wide interval (a stall in one run) and
a significant change smaller than the threshold are both "unchanged"; the note column says which.

Default thresholds: p50 +10%: side by side, nothing-changed pairs of smoke runs differed by at most 4%
in p50 and a 20% slowdown was called worse 10 times out of 10 (scripts/gate_benchmark.py); between runs
made at different times a 10% shift may be a machine that got busier (see the README). p99 +50%: a
smoke run's p99 rests on its seven or eight slowest requests, and on a shared 2-core VM the tail moves
by -32% to +20% between side-by-side runs with nothing changed and by -90% to +150% between runs made
one after the other; +50% still catches a tail that doubles. Longer profiles can afford --fail-on
p99:20%. Throughput -10%. Every other metric is compared only when given with --fail-on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.results.baseline import CellData, CellKey, CellSamples, Fingerprint, Side
from bench.stats import PERCENTILES

# +1: a rise is a regression (latency, ms); -1: a fall is a regression (throughput, req/s)
METRICS: dict[str, int] = {"p50": 1, "p90": 1, "p95": 1, "p99": 1, "p999": 1, "mean": 1, "throughput": -1}
LATENCY_METRICS = ("p50", "p90", "p95", "p99", "p999", "mean")
DEFAULT_THRESHOLDS: dict[str, float] = {"p50": 0.10, "p99": 0.50, "throughput": -0.10}
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

_SPEC = re.compile(r"^\s*([A-Za-z0-9]+)\s*:\s*([+-]?\d+(?:\.\d+)?)\s*%?\s*$")


def parse_thresholds(specs: Sequence[str]) -> dict[str, float]:
    """The defaults, overridden metric by metric by --fail-on METRIC:PCT (fractions, signed as the
    regression: latency positive, throughput negative)."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for spec in specs:
        match = _SPEC.match(spec)
        if not match:
            raise BenchError(f"--fail-on {spec!r}: expected METRIC:PCT", hint="for example p99:20% or throughput:-10%")
        metric, value = match.group(1).lower(), float(match.group(2))
        if metric not in METRICS:
            raise BenchError(f"--fail-on {spec}: unknown metric '{metric}'", hint=f"metrics: {', '.join(METRICS)}")
        direction = METRICS[metric]
        if value * direction < 0:
            rises = "rises, so its threshold is positive" if direction > 0 else "falls, so its threshold is negative"
            raise BenchError(f"--fail-on {spec}: {metric} regresses when it {rises}",
                             hint=f"--fail-on {metric}:{direction * abs(value):+g}%")
        thresholds[metric] = direction * abs(value) / 100.0
    return {metric: thresholds[metric] for metric in METRICS if metric in thresholds}


# ---- the test ------------------------------------------------------------------------------------


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


def _block(samples: CellSamples, second: int) -> np.ndarray[Any, Any]:
    return samples.latency_us[second] if 0 <= second < len(samples.latency_us) else np.empty(0, dtype=np.int64)


def paired_view(samples: CellSamples, first: int, keep: list[int], counted: int) -> CellSamples:
    """One side restricted to the common seconds, in wall-clock order: latency blocks of the seconds in
    `keep` (offsets into the common range where both sides have latencies), completions of the first
    `counted` common seconds."""
    blocks = [_block(samples, first + k) for k in keep]
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


# ---- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellResult:
    key: CellKey
    verdict: str
    metrics: list[MetricResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cell_verdict(metrics: list[MetricResult]) -> str:
    verdicts = {m.verdict for m in metrics}
    for verdict in (WORSE, NOT_COMPARABLE, BETTER):
        if verdict in verdicts:
            return verdict
    return UNCHANGED


def compare_cells(base: CellData, cur: CellData, thresholds: dict[str, float]) -> list[MetricResult]:
    """Every gated metric of a matched pair whose environments agree: a paired test over the common
    seconds when the two runs were measured side by side, else each side resampled independently."""
    pairing = side_by_side(base.samples, cur.samples)
    if pairing is None or base.samples is None or cur.samples is None:
        base_resampled = resampled(base.samples, 0, base.samples_note)
        cur_resampled = resampled(cur.samples, 1, cur.samples_note)
    else:
        keep = [k for k in range(pairing.seconds) if len(_block(base.samples, pairing.base_first + k))
                and len(_block(cur.samples, pairing.current_first + k))]
        counted = max(0, min(pairing.seconds, len(base.samples.completed_per_s) - pairing.base_first,
                             len(cur.samples.completed_per_s) - pairing.current_first))
        base_resampled = resampled(paired_view(base.samples, pairing.base_first, keep, counted), 2, None)
        cur_resampled = resampled(paired_view(cur.samples, pairing.current_first, keep, counted), 2, None)
    return [judge(metric, threshold, base.figures.get(metric), cur.figures.get(metric), base_resampled,
                  cur_resampled, pairing is not None) for metric, threshold in thresholds.items()]


def _invalid_notes(base: CellData, cur: CellData) -> list[str]:
    notes = []
    for side, cell in (("baseline", base), ("current", cur)):
        if not cell.valid:
            notes.append(f"{side} invalid: {'; '.join(cell.invalid_reasons) or 'no reason recorded'}")
    return notes


def _fingerprint(side: Side, runtime: str) -> Fingerprint:
    return side.fingerprints.get(runtime) or Fingerprint(None, None, None)


def compare(baseline: Side, current: Side, thresholds: dict[str, float] | None = None,
            allow_env_change: bool = False) -> Comparison:
    """Verdicts for every cell of either side, baseline order first."""
    gates = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    keys = list(baseline.cells) + [key for key in current.cells if key not in baseline.cells]
    results = []
    for key in keys:
        base, cur = baseline.cells.get(key), current.cells.get(key)
        if base is None or cur is None:
            results.append(CellResult(key, MISSING, notes=["not in the " + ("baseline" if base is None else
                                                                            "current run")]))
            continue
        if not (base.valid and cur.valid):
            results.append(CellResult(key, INVALID, notes=_invalid_notes(base, cur)))
            continue
        changes = _fingerprint(baseline, key[0]).differences(_fingerprint(current, key[0]))
        if changes and not allow_env_change:
            results.append(CellResult(key, NOT_COMPARABLE, notes=["environment differs: " + "; ".join(changes)]))
            continue
        metrics = compare_cells(base, cur, gates)
        notes = ["environment differs (allowed): " + "; ".join(changes)] if changes else []
        results.append(CellResult(key, _cell_verdict(metrics), metrics, notes))
    return Comparison(baseline, current, dict(gates), results, allow_env_change)


@dataclass(frozen=True)
class Comparison:
    baseline: Side
    current: Side
    thresholds: dict[str, float]
    cells: list[CellResult]
    allow_env_change: bool

    def count(self, verdict: str) -> int:
        return sum(1 for cell in self.cells if cell.verdict == verdict)

    @property
    def status(self) -> str:
        """regression if any metric is worse; undetermined if a matched pair could not be judged (or none
        matched); pass otherwise. Missing cells alone change nothing: a run of fewer runtimes is allowed."""
        if self.count(WORSE):
            return REGRESSION
        matched = [cell for cell in self.cells if cell.verdict != MISSING]
        if not matched or any(cell.verdict in UNDETERMINED for cell in matched):
            return UNDECIDED
        return PASS

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def headline(self) -> str:
        counts = ", ".join(f"{self.count(v)} {v}" for v in (WORSE, BETTER, UNCHANGED, NOT_COMPARABLE, INVALID, MISSING)
                           if self.count(v))
        if self.status == REGRESSION:
            worst = [f"{cell_title(c.key)} {m.metric} {_pct(m.change)}" for c in self.cells for m in c.metrics
                     if m.verdict == WORSE]
            more = f"; and {len(worst) - 3} more" if len(worst) > 3 else ""
            return f"REGRESSION: {'; '.join(worst[:3])}{more} ({counts})"
        if self.status == UNDECIDED:
            if not any(cell.verdict != MISSING for cell in self.cells):
                return "undetermined: no cell is in both runs"
            return f"undetermined: some cells could not be judged ({counts})"
        return f"pass: nothing regressed ({counts})"

    def hint(self) -> str:
        if self.count(NOT_COMPARABLE):
            return ("refresh the baseline on this machine class (README: refreshing the baseline), or pass "
                    "--allow-env-change to compare anyway")
        if self.count(INVALID):
            return "see the invalid reasons above; rerun, or refresh a baseline whose cells are invalid"
        return "compare runs that measured the same runtimes, models and scenario"


# ---- output --------------------------------------------------------------------------------------


def cell_title(key: CellKey) -> str:
    runtime, model, _, _, _, _ = key
    return f"{runtime} x {model} {load_title(key)}"


def load_title(key: CellKey) -> str:
    _, _, scenario, target, batch_size, label = key
    text = f"{scenario} {label or ''}".strip()
    if batch_size != 1 and "batch=" not in (label or ""):
        text += f" batch={batch_size}"
    return text + ("" if target == "local" else f" @{target}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


def _figure(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "throughput":
        return f"{value:.1f}/s"
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def threshold_text(metric: str, threshold: float) -> str:
    return f"{metric} {threshold * 100:+g}%"


HEADER = ("runtime", "model", "load", "metric", "baseline", "current", "change", "95% CI", "threshold", "verdict",
          "test / note")


def table_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for cell in comparison.cells:
        lead = [cell.key[0], cell.key[1], load_title(cell.key)]
        for metric in cell.metrics:
            ci = "-" if metric.ci is None else f"[{_pct(metric.ci[0])}, {_pct(metric.ci[1])}]"
            rows.append([*lead, metric.metric, _figure(metric.metric, metric.baseline),
                         _figure(metric.metric, metric.current), _pct(metric.change), ci,
                         f"{metric.threshold * 100:+g}%", metric.verdict,
                         "; ".join(t for t in (metric.test, metric.note) if t and t != "-")])
        if not cell.metrics or cell.notes:
            verdict = "(note)" if cell.metrics else cell.verdict
            rows.append([*lead, "-", "-", "-", "-", "-", "-", verdict, "; ".join(cell.notes)])
    return rows


def _sides(comparison: Comparison) -> list[str]:
    return [f"baseline: {comparison.baseline.describe()}", f"current:  {comparison.current.describe()}"]


def _footer(comparison: Comparison) -> list[str]:
    gates = ", ".join(threshold_text(m, t) for m, t in comparison.thresholds.items())
    return [f"thresholds: {gates}", f"test: {METHOD}"]


def render_text(comparison: Comparison) -> str:
    rows = [list(HEADER), *table_rows(comparison)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = [f"bench compare: {comparison.headline()}", *_sides(comparison), ""]
    lines += ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
              for row in rows]
    return "\n".join([*lines, "", *_footer(comparison)]) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(comparison: Comparison) -> str:
    icon = {PASS: "✅", REGRESSION: "❌", UNDECIDED: "⚠️"}[comparison.status]
    lines = [f"### {icon} Serving latency gate: {_md(comparison.headline())}", ""]
    lines += [f"- {_md(line)}" for line in _sides(comparison)] + [""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(comparison):
        row[9] = f"**{row[9]}**" if row[9] in (WORSE, NOT_COMPARABLE, INVALID) else row[9]
        lines.append("| " + " | ".join(_md(cell) for cell in row) + " |")
    return "\n".join([*lines, "", *(f"{_md(line)}  " for line in _footer(comparison))]) + "\n"


def as_json(comparison: Comparison) -> dict[str, Any]:
    def side(each: Side) -> dict[str, Any]:
        return {"path": str(each.path), "kind": each.kind, "run_id": each.run_id, "git_sha": each.git_sha,
                "status": each.status}

    cells = []
    for cell in comparison.cells:
        runtime, model, scenario, target, batch_size, label = cell.key
        cells.append({"runtime": runtime, "model": model, "scenario": scenario, "target": target,
                      "batch_size": batch_size, "label": label, "verdict": cell.verdict, "notes": cell.notes,
                      "metrics": [{"metric": m.metric, "verdict": m.verdict, "baseline": m.baseline,
                                   "current": m.current, "change": m.change,
                                   "ci": None if m.ci is None else list(m.ci), "threshold": m.threshold,
                                   "test": m.test, "note": m.note} for m in cell.metrics]})
    return {"status": comparison.status, "exit_code": comparison.exit_code, "headline": comparison.headline(),
            "baseline": side(comparison.baseline), "current": side(comparison.current),
            "thresholds": comparison.thresholds, "allow_env_change": comparison.allow_env_change,
            "confidence": CONFIDENCE, "resamples": RESAMPLES, "method": METHOD, "cells": cells}


FORMATS = ("text", "md", "json")


def render(comparison: Comparison, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(comparison)
    if fmt == "json":
        return json.dumps(as_json(comparison), indent=1) + "\n"
    return render_text(comparison)
