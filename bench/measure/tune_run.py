"""`bench tune`: the tuning search (bench.measure.tuning) driven through the run orchestrator.

Each configuration the search asks for is deployed afresh on the same CPU set and memory limit, and
gets a whole capacity search (bench.measure.capacity_run), its probes labelled with the configuration.
The first configuration is the default; every later one starts its search at the common rate (a rate the
default passed at, at most half its capacity), so each configuration's first probe is its point on the
frontier (capacity against p99 at one rate) and the bracket is found in a probe or two. A configuration
whose server grew past the memory budget is recorded, with the reason, and never chosen. Each
configuration's capacity goes into results.json's `capacity` list as soon as its search ends; the
tuning record when the pair is done. Then, unless told not to, the best configuration is deployed once
more for one profiled cell at the common rate (py-spy over its window: where its time goes), labelled
`[config] profile rate=R`, outside the searches and their records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from bench.config import RunLength, RuntimeSpec, Scenario
from bench.knobs import Config, config_label
from bench.measure.capacity import Capacity, SearchSettings, rounded
from bench.measure.capacity_run import CapacityPlan
from bench.measure.plan import Measurement
from bench.measure.tuning import Trial, TuningOutcome, TuningSearch, search_kind, tuning_search
from bench.results.schema import Cell, SkippedConfig, TunedConfig, TuningRecord
from bench.results.store import RunStore

COMMON_RATE_SHARE = 0.5  # the frontier's rate: this share of the default configuration's capacity


def p99_at(cells: list[Cell], rate: float) -> float | None:
    """p99 at rate, read off a configuration's valid probes: their mean at that rate, else interpolated in
    log(p99) between the nearest probed rates on either side (None outside the probed range)."""
    by_rate: dict[float, list[float]] = {}
    for cell in cells:
        if cell.validity.valid and cell.latency.p99 and cell.load.offered_rps:
            by_rate.setdefault(rounded(cell.load.offered_rps), []).append(cell.latency.p99)
    means = {r: sum(v) / len(v) for r, v in by_rate.items()}
    if rounded(rate) in means:
        return means[rounded(rate)]
    below = [r for r in means if r < rate]
    above = [r for r in means if r > rate]
    if not below or not above:
        return None
    low, high = max(below), min(above)
    share = (rate - low) / (high - low)
    return math.exp(math.log(means[low]) + share * (math.log(means[high]) - math.log(means[low])))


def common_rate(default_cells: list[Cell], capacity_rps: float) -> float:
    """The frontier's rate, one the default configuration was probed at so that its p99 there is measured:
    its highest passing probe at or below half its capacity, else its lowest passing probe, else half."""
    passed = sorted(c.load.offered_rps for c in default_cells
                    if c.validity.valid and c.slo_met and c.load.offered_rps)
    below = [rate for rate in passed if rate <= COMMON_RATE_SHARE * capacity_rps]
    return rounded(below[-1] if below else passed[0] if passed else COMMON_RATE_SHARE * capacity_rps)


def cost_at_capacity(cells: list[Cell]) -> float | None:
    """CPU-seconds per 1,000 predictions at the highest rate that passed: the cost of serving at capacity."""
    passed = [c for c in cells if c.validity.valid and c.slo_met and c.server.cpu_s_per_1000 is not None]
    if not passed:
        return None
    return max(passed, key=lambda c: c.load.offered_rps or 0.0).server.cpu_s_per_1000


@dataclass
class TunePlan:
    """One runtime x model's tuning: a capacity search per configuration, each its own deployment."""

    runtime: RuntimeSpec  # as shipped (its default configuration)
    model: str
    scenario: Scenario
    profile: RunLength  # the run length (--length)
    settings: SearchSettings
    server_cpus: int
    memory_mb: float | None
    max_configs: int
    steps: TuningSearch = field(init=False)
    current: CapacityPlan | None = None
    measured: list[TunedConfig] = field(default_factory=list)
    common_rps: float | None = None
    outcome: TuningOutcome | None = None
    profile_best: bool = True  # one profiled cell of the best configuration once the search is done
    profiling: Measurement | None = None  # that cell, while it is pending

    def __post_init__(self) -> None:
        self.steps = tuning_search(self.runtime.knobs, self.server_cpus, self.max_configs)

    def _search_for(self, config: Config) -> CapacityPlan:
        settings = self.settings if self.common_rps is None else replace(self.settings, start_rps=self.common_rps)
        return CapacityPlan(self.runtime.configured(config), self.model, self.scenario, self.profile, settings,
                            label_prefix=f"[{config_label(config)}] ")

    def deployment(self, base: RuntimeSpec, store: RunStore) -> RuntimeSpec | None:
        if self.outcome is not None:  # the search is over: the profiled cell, then nothing
            return self._profiled_best()
        try:
            config = next(self.steps) if self.current is None else self.steps.send(self._score(self._conclude(store)))
        except StopIteration as done:
            self.outcome = done.value
            self.current = None
            return self._profiled_best()
        self.current = self._search_for(config)
        self.current.deployed = True
        return self.current.runtime

    def _profiled_best(self) -> RuntimeSpec | None:
        """The best configuration again, for one profiled cell at the common rate (once; None after)."""
        if not self.profile_best or self.outcome is None or self.profiling is not None or not self.measured:
            self.profiling = None
            return None
        best = TuningOutcome("grid", self.outcome.tried, ()).best.config
        rate = self.common_rps or self.settings.start_rps
        search = CapacityPlan(self.runtime.configured(best), self.model, self.scenario, self.profile,
                              replace(self.settings, start_rps=rate), label_prefix=f"[{config_label(best)}] profile ")
        self.profiling = replace(search.measurement(), stop_when=None, profile=True)
        self.profile_best = False
        return search.runtime

    def _conclude(self, store: RunStore) -> TunedConfig:
        """The configuration just searched: its capacity record on disk now, its summary kept."""
        assert self.current is not None
        search = self.current
        store.add_capacity(search.record())
        found = search.result or Capacity(None, None, None, None, ())
        if self.common_rps is None and found.capacity_rps:  # the default's search sets the frontier's rate
            self.common_rps = common_rate(search.cells, found.capacity_rps)
        rss = [c.server.rss_mb_max for c in search.cells if c.server.rss_mb_max is not None]
        peak = max(rss) if rss else None
        over = (f"peak RSS {peak:.0f} MB over the {self.memory_mb:.0f} MB budget"
                if peak is not None and self.memory_mb is not None and peak > self.memory_mb else None)
        tuned = TunedConfig(
            config=dict(search.runtime.config), capacity_rps=found.capacity_rps, ci_low=found.ci_low,
            ci_high=found.ci_high, limited_by=found.limited_by, cpu_s_per_1000=cost_at_capacity(search.cells),
            p99_at_common_ms=p99_at(search.cells, self.common_rps) if self.common_rps else None,
            rss_mb_max=peak, over_budget=over)
        self.measured.append(tuned)
        return tuned

    @staticmethod
    def _score(tuned: TunedConfig) -> float | None:
        return None if tuned.over_budget else tuned.capacity_rps

    def next(self, finished: Cell | None) -> Measurement | None:
        if self.current is None and self.profiling is not None:  # the profiled cell of the best configuration
            pending, self.profiling = (self.profiling, None) if finished is None else (None, None)
            return pending
        return self.current.next(finished) if self.current is not None else None

    def unmeasured(self) -> list[Measurement]:
        return (self.current or self._search_for(dict(self.runtime.config))).unmeasured()

    def finish(self, store: RunStore) -> None:
        if self.current is not None:  # the last configuration ends with the pair (an interrupted search)
            self._conclude(store)
        if not self.measured:
            return
        tried = self.outcome.tried if self.outcome else tuple(Trial(t.config, self._score(t)) for t in self.measured)
        best_config = TuningOutcome("grid", tried, ()).best.config
        by_config = {config_label(t.config): t for t in self.measured}
        default = self.measured[0]
        skipped = self.outcome.skipped if self.outcome else ()
        store.add_tuning(TuningRecord(
            runtime=self.runtime.name, model=self.model, slo=self.scenario.slo, search=search_kind(self.runtime.knobs),
            server_cpus=self.server_cpus, memory_mb=self.memory_mb, common_rps=self.common_rps, default=default,
            best=by_config.get(config_label(best_config), default), tried=tuple(self.measured),
            skipped=tuple(SkippedConfig(config=c, reason=r) for c, r in skipped)))
