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
times cannot be paired: no test can tell their code apart from their machine's drift (see docs/guide.md).

A regression needs both conditions of the issue at once: the whole 95% interval of the change lies beyond
the threshold, i.e. the change exceeds the threshold and does so significantly (a one-sided test at 2.5%
of "the change is at most the threshold"). A large change with a wide interval (a stall in one run) and
a significant change smaller than the threshold are both "unchanged"; the note column says which.

Default thresholds: p50 +10%: side by side, nothing-changed pairs of smoke runs differed by at most 4%
in p50 and a 20% slowdown was called worse 10 times out of 10 (scripts/gate_benchmark.py); between runs
made at different times a 10% shift may be a machine that got busier (see docs/guide.md). p99 +50%: a
smoke run's p99 rests on its seven or eight slowest requests, and on a shared 2-core VM the tail moves
by -32% to +20% between side-by-side runs with nothing changed and by -90% to +150% between runs made
one after the other; +50% still catches a tail that doubles. Longer runs can afford --fail-on
p99:20%. Throughput -10%. Every other metric is compared only when given with --fail-on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.compare.bootstrap import (
    BETTER,
    EXIT_CODES,
    INVALID,
    METRICS,
    MISSING,
    NOT_COMPARABLE,
    PASS,
    REGRESSION,
    UNCHANGED,
    UNDECIDED,
    UNDETERMINED,
    WORSE,
    MetricResult,
    block_of,
    judge,
    paired_view,
    resampled,
    side_by_side,
)
from bench.compare.side import CellData, Fingerprint, Side
from bench.errors import BenchError
from bench.results.baseline import CellKey

DEFAULT_THRESHOLDS: dict[str, float] = {"p50": 0.10, "p99": 0.50, "throughput": -0.10}
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
        keep = [k for k in range(pairing.seconds) if len(block_of(base.samples, pairing.base_first + k))
                and len(block_of(cur.samples, pairing.current_first + k))]
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
            worst = [f"{cell_title(c.key)} {m.metric} {pct(m.change)}" for c in self.cells for m in c.metrics
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
            return ("refresh the baseline on this machine class (docs/guide.md: refreshing the baseline), or pass "
                    "--allow-env-change to compare anyway")
        if self.count(INVALID):
            return "see the invalid reasons above; rerun, or refresh a baseline whose cells are invalid"
        return "compare runs that measured the same runtimes, models and scenario"


def cell_title(key: CellKey) -> str:
    runtime, model, _, _, _, _ = key
    return f"{runtime} x {model} {load_title(key)}"


def load_title(key: CellKey) -> str:
    _, _, scenario, target, batch_size, label = key
    text = f"{scenario} {label or ''}".strip()
    if batch_size != 1 and "batch=" not in (label or ""):
        text += f" batch={batch_size}"
    return text + ("" if target == "local" else f" @{target}")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"
