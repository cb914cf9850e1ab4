"""`bench capacity`: the capacity search (bench.measure.capacity) driven through the run orchestrator.

Each probe is a full measured cell of an open-loop Poisson load at the rate the search chose, kept in
the run with its samples like any other; a probe that has clearly collapsed is cut short. When the
search ends, the pair's capacity goes into results.json's run-level `capacity` list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bench.config import RunLength, RuntimeSpec, Scenario, Slo
from bench.load.driver import LiveTick, StopRule
from bench.measure.capacity import Capacity, Outcome, Search, SearchSettings, search
from bench.measure.plan import Measurement, plan_measurements
from bench.results.schema import CapacityRecord, Cell
from bench.results.store import RunStore
from bench.stats import generator_limit

COLLAPSE_FACTOR = 5.0  # a probe whose live p99 stays this far over the SLO...
COLLAPSE_SECONDS = 3  # ...for this many measured seconds in a row has failed: stop it


def probe_scenario(base: Scenario, slo: Slo) -> Scenario:
    """The load every probe shares: open loop, the base scenario's durations and limits, and its arrivals when
    they are bursty or a trace (the capacity under that traffic; a trace's time scale is rate / its mean),
    else Poisson."""
    arrival = base.arrival if base.arrival in ("gamma", "trace") else "poisson"
    return base.model_copy(update={"loop": "open", "arrival": arrival, "rate": 1.0, "sweep": None, "stages": None,
                                   "users": None, "batch_sizes": [1], "slo": slo})


def collapse_rule(slo_ms: float) -> StopRule:
    """Stop a probe once its per-second p99 has stayed COLLAPSE_FACTOR x over the SLO for COLLAPSE_SECONDS."""
    over = [0]

    def rule(tick: LiveTick) -> str | None:
        if tick.elapsed_s < 0:
            return None  # warm-up: the server may still be loading
        over[0] = over[0] + 1 if tick.p99_ms is not None and tick.p99_ms > COLLAPSE_FACTOR * slo_ms else 0
        if over[0] >= COLLAPSE_SECONDS:
            return (f"p99 over {COLLAPSE_FACTOR:g}x the SLO ({COLLAPSE_FACTOR * slo_ms:g} ms) for {COLLAPSE_SECONDS} "
                    "s in a row: the server has collapsed at this rate")
        return None

    return rule


def generator_limited(cell: Cell) -> bool:
    """The generator, not the server, could not keep up (the rule validity applies: bench.stats)."""
    return generator_limit(cell.load.loop, cell, cell.generator.cpu_percent_max if cell.generator else None) is not None


def outcome_of(cell: Cell, slo: Slo) -> Outcome:
    """A probe's verdict, its SLO percentile and that percentile's 95% interval (only p50 and p99 get one).
    An invalid probe (errors, a collapse cut short, too few requests) counts as infinitely slow: a missed SLO
    never makes a cell invalid, so whatever invalidated it was not latency."""
    limited = generator_limited(cell)
    value = cell.latency.percentile(slo.percentile)
    rate = cell.load.offered_rps or 0.0
    if value is None or not cell.validity.valid:
        return Outcome(rate, False, generator_limited=limited, label=cell.label)
    interval = getattr(cell.latency_ci, slo.percentile, None)
    return Outcome(rate, cell.slo_met is True, value, interval.low if interval else None,
                   interval.high if interval else None, limited, cell.label)


@dataclass
class CapacityPlan:
    """One runtime x model's search: each cell answers the previous probe and asks for the next."""

    runtime: RuntimeSpec
    model: str
    scenario: Scenario
    profile: RunLength  # the run length (--length)
    settings: SearchSettings
    label_prefix: str = ""  # bench tune: the configuration, so that probes of two configurations differ
    steps: Search = field(init=False)
    rate: float = field(init=False)
    labels: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    deployed: bool = False
    attempts: dict[float, int] = field(default_factory=dict)
    result: Capacity | None = None

    def __post_init__(self) -> None:
        self.settings = replace(self.settings, slo_ms=self.scenario.slo.ms)  # one SLO for probes and search
        self.steps = search(self.settings)
        self.rate = next(self.steps)

    def measurement(self) -> Measurement:
        """The probe at the current rate. Each probe draws its own arrivals (the scenario's seed plus the
        probe's number): a repeat is an independent sample, and the whole search stays reproducible."""
        attempt = self.attempts[self.rate] = self.attempts.get(self.rate, 0) + 1
        at_rate = self.scenario.model_copy(update={"rate": self.rate})
        measurement = plan_measurements(at_rate, self.profile)[0]
        label = self.label_prefix + measurement.label + (f"#{attempt}" if attempt > 1 else "")  # repeats: own keys
        return Measurement(label, measurement.batch_size, measurement.loop, measurement.arrival,
                           measurement.stages, measurement.users, measurement.warmup_s, measurement.duration_s,
                           measurement.offered_rps, collapse_rule(self.scenario.slo.ms),
                           seed=self.scenario.seed + len(self.labels))

    def next(self, finished: Cell | None) -> Measurement | None:
        if finished is None:
            return self.measurement()
        self.labels.append(finished.label)
        self.cells.append(finished)
        if finished.status == "failed":  # not measured (parity, a dead server): nothing to search with
            self.result = Capacity(None, None, None, None, ())
            return None
        try:
            self.rate = self.steps.send(outcome_of(finished, self.scenario.slo))
        except StopIteration as done:
            self.result = done.value
            return None
        return self.measurement()

    def deployment(self, base: RuntimeSpec, store: RunStore) -> RuntimeSpec | None:
        """One deployment: the runtime as configured."""
        if self.deployed:
            return None
        self.deployed = True
        return self.runtime

    def unmeasured(self) -> list[Measurement]:
        return [self.measurement()]

    def finish(self, store: RunStore) -> None:
        store.add_capacity(self.record())

    def record(self) -> CapacityRecord:
        found = self.result or Capacity(None, None, None, None, ())
        return CapacityRecord(
            runtime=self.runtime.name, model=self.model, config=dict(self.runtime.config), slo=self.scenario.slo,
            capacity_rps=found.capacity_rps, ci_low=found.ci_low, ci_high=found.ci_high, limited_by=found.limited_by,
            resolution=self.settings.resolution, probes=tuple(self.labels))
