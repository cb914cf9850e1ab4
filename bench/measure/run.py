"""`bench run`: every runtime x model x measurement of a scenario, one cell at a time.

For each runtime and model the server is deployed once, checked for parity, then measured once per
load point of the scenario (sweep rate or user count, batch size). Every finished cell goes to disk at
once; a server that fails to start or dies yields cells with the error and the run goes on; Ctrl-C stops
the load, writes what was measured (the interrupted cell marked invalid) and stops every server.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Protocol

from bench.config import ModelSpec, RunLength, RuntimeSpec, Scenario
from bench.errors import BenchError, DeployError
from bench.events import Completed, EventHook, Message
from bench.load.driver import LiveTick
from bench.load.plan import RemoteWorkers
from bench.measure import cell as cells
from bench.measure.model_record import model_record
from bench.measure.parity import check_parity
from bench.measure.plan import Measurement, limits_for, plan_measurements
from bench.measure.rounds import combine_rounds, rotated
from bench.measure.sweep import sweep_summary
from bench.models.registry import LocalModel, resolve
from bench.processes import GeneratorPriority
from bench.provision.serving_code import serving_code
from bench.provision.support import served, why_unsupported
from bench.results.environment import environment_fingerprint
from bench.results.sample_file import ParquetSamples
from bench.results.schema import (
    Cell,
    Fairness,
    ModelCost,
    RunFairness,
    RunResults,
    RuntimeRecord,
    UnsupportedPair,
)
from bench.results.store import RunStore
from bench.server_time.model_cost import time_model
from bench.server_time.recorder import RATE_HZ, ProfileSettings
from bench.targets.base import Deployment, Provisioned, Target


@dataclass
class RunOptions:
    runtimes: list[RuntimeSpec]
    models: list[ModelSpec]
    scenario: Scenario
    profile: RunLength  # the run length (--length)
    target: Target
    out_dir: Path
    run_id: str
    generator_cpus: tuple[int, ...]
    fairness: RunFairness = field(default_factory=RunFairness)
    rounds: int = 1  # > 1: every runtime measured once per round, the order rotated (bench run --rounds)
    remote: RemoteWorkers | None = None  # bench run --expect-workers: the generator is remote workers
    price_per_core_hour: float | None = None
    profile_rate_hz: int | None = None  # --sample-server: every cell's server sampled by py-spy at this rate
    generator_priority: GeneratorPriority = "real-time"  # the generator's scheduling class (CpuPlan's)


@dataclass(frozen=True)
class CellStarted:
    """The load of cell `index` of `total` is starting."""

    index: int
    total: int
    title: str


@dataclass(frozen=True)
class LoadTick:
    """A second of live figures from the generator, for a progress line (never for the results)."""

    title: str
    tick: LiveTick


RunEvent = Message | CellStarted | LoadTick | Completed[Cell]  # Completed: a cell is on disk


def runtime_record(runtime: RuntimeSpec, provisioned: Provisioned | None) -> RuntimeRecord:
    """What the report's comparison table shows about a runtime, measured now rather than at render time."""
    return RuntimeRecord(protocol=runtime.protocol, description=runtime.description, settings=dict(runtime.settings),
                         folder=str(runtime.folder), serving_code=serving_code(runtime),
                         provisioning=provisioned.record if provisioned else None)


@dataclass
class _Progress:
    """Numbers the cells in the order they are measured and tells the listeners."""

    store: RunStore
    events: EventHook[RunEvent]
    total: int  # 0: not known in advance (a search decides how many cells)
    index: int = 0

    def say(self, text: str) -> None:
        self.events.fire(Message(text))

    def tick(self, title: str, tick: LiveTick) -> None:
        self.events.fire(LoadTick(title, tick))

    def next_index(self) -> int:
        return self.index + 1

    def finish(self, cell: Cell, samples: ParquetSamples | None = None) -> Cell:
        self.index += 1
        stored = self.store.add_cell(cell, samples)
        self.events.fire(Completed(stored, self.index, self.total))
        return stored

    def fail_all(self, options: RunOptions, runtime: RuntimeSpec, model: str, plan: PairPlan, error: str) -> None:
        """The server never started: every measurement the plan still holds becomes a failed cell."""
        for measurement in plan.unmeasured():
            skeleton = cells.skeleton(options.scenario, options.target.name, runtime, model, measurement,
                                      self.next_index())
            self.finish(cells.failed(skeleton, error))


class PairPlan(Protocol):
    """What one runtime x model measures, one cell at a time: a scenario's fixed list, or a search that
    chooses each load from the cells before it."""

    def next(self, finished: Cell | None) -> Measurement | None:
        """The next measurement (the first one when finished is None), or None when the pair is done."""

    def unmeasured(self) -> list[Measurement]:
        """What would have been measured, as failed cells, when the server never started."""

    def deployment(self, base: RuntimeSpec, store: RunStore) -> RuntimeSpec | None:
        """The runtime to deploy next (base, or base in another configuration), or None when the pair is
        done; asked again after each deployment's last cell, so a tuning plan can record as it goes."""

    def finish(self, store: RunStore) -> None:
        """Record what the pair found at run level (a capacity), once its last cell is on disk."""


@dataclass
class FixedPlan:
    """A scenario's measurements in order (bench run)."""

    measurements: list[Measurement]
    position: int = 0
    deployed: bool = False

    def next(self, finished: Cell | None) -> Measurement | None:
        if self.position >= len(self.measurements):
            return None
        self.position += 1
        return self.measurements[self.position - 1]

    def unmeasured(self) -> list[Measurement]:
        return self.measurements[self.position:]

    def deployment(self, base: RuntimeSpec, store: RunStore) -> RuntimeSpec | None:
        if self.deployed:
            return None
        self.deployed = True
        return base

    def finish(self, store: RunStore) -> None:
        """A fixed list records nothing beyond its cells."""


PlanFactory = Callable[[RuntimeSpec, ModelSpec], PairPlan]


def run_benchmark(options: RunOptions, events: EventHook[RunEvent] | None = None,
                  plans: PlanFactory | None = None) -> RunStore:
    """Run every cell; returns the store (status complete), or raises KeyboardInterrupt after saving.

    plans: what each runtime x model measures; by default the scenario's measurements (bench run)."""
    events = events or EventHook()
    say = partial(_fire_message, events)
    measurements = plan_measurements(options.scenario, options.profile)
    plan_for = plans or (lambda _runtime, _model: FixedPlan(list(measurements)))
    provisioned: dict[str, Provisioned] = {}
    env_errors: dict[str, str] = {}
    for runtime in options.runtimes:
        try:
            provisioned[runtime.name] = options.target.provision(runtime, options.out_dir / "servers", say)
        except BenchError as exc:
            env_errors[runtime.name] = f"{options.target.name} provisioning failed: {exc.message.splitlines()[0]}"
    models = {spec.name: resolve(spec, say) for spec in options.models}
    unsupported = {(runtime.name, name): reason for runtime in options.runtimes for name, model in models.items()
                   if (reason := why_unsupported(runtime, model, partial(_env_status, say, name),
                                                 environments=options.target.builds_environments)) is not None}
    store = RunStore.create(options.out_dir, RunResults(
        run_id=options.run_id,
        environment=environment_fingerprint({name: p.packages for name, p in provisioned.items()}),
        scenario=options.scenario, profile=options.profile, target=options.target.name, fairness=options.fairness,
        price_per_core_hour=options.price_per_core_hour,
        runtimes={r.name: runtime_record(r, provisioned.get(r.name)) for r in options.runtimes},
        models={name: model_record(m) for name, m in models.items()},
        unsupported=tuple(UnsupportedPair(runtime=runtime, model=model, reason=reason)
                          for (runtime, model), reason in unsupported.items()),
    ))
    pairs = len(options.runtimes) * len(options.models) - len(unsupported)
    progress = _Progress(store, events, pairs * len(measurements) * options.rounds if plans is None else 0)
    try:
        for round_index in range(options.rounds):
            if options.rounds > 1:
                progress.say(f"round {round_index + 1} of {options.rounds}")
            for runtime in rotated(options.runtimes, round_index):
                for model_spec in options.models:
                    reason = unsupported.get((runtime.name, model_spec.name))
                    if reason is not None:  # the runtime cannot serve the model: recorded, skipped, not failed
                        if round_index == 0:
                            progress.say(f"{runtime.name} x {model_spec.name}: unsupported: {reason}; skipped")
                        continue
                    plan = plan_for(runtime, model_spec) if options.rounds == 1 else FixedPlan(
                        [replace(m, round=round_index + 1) for m in measurements])
                    if runtime.name in env_errors:
                        progress.fail_all(options, runtime, model_spec.name, plan, env_errors[runtime.name])
                    else:
                        while (configured := plan.deployment(runtime, store)) is not None:
                            _run_pair(options, progress, configured, models[model_spec.name], plan)
                    plan.finish(store)
    except cells.Interrupted as stop:
        store.add_cell(stop.cell, stop.samples)
        store.finish("interrupted")
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        store.finish("interrupted")
        raise
    except BaseException as original:  # a bug or a resource running out: what was measured is saved, and says so
        cause = traceback.format_exc()
        try:
            store.finish("failed")
        except OSError as unsaved:  # not even the reserve was enough: the original error still goes up
            say(f"the run failed and results.json could not be marked so ({unsaved.strerror}); it holds every cell "
                f"saved before:\n{cause}")
            raise original from None
        say(f"the run failed on an unexpected error; what was measured is saved:\n{cause}")
        raise
    if options.scenario.sweep:
        store.set_sweeps(sweep_summary(store.results.cells))
    if options.rounds > 1:
        store.set_rounds(tuple(combine_rounds(store.results.cells, options.out_dir, options.scenario.slo.percentile,
                                              options.scenario.seed)))
    store.finish("complete")
    return store


def _env_status(say: Callable[[str], None], model: str, runtime: str, status: str) -> None:
    say(f"{runtime} environment for {model}: {status}")


def _fire_message(events: EventHook[RunEvent], text: str) -> None:
    events.fire(Message(text))


def _run_pair(options: RunOptions, progress: _Progress, runtime: RuntimeSpec, model: LocalModel,
              plan: PairPlan) -> None:
    title = f"{runtime.name} x {model.name}"
    progress.say(f"{title}: starting on {options.target.name}")
    try:
        deployment = options.target.deploy(runtime, served(runtime, model), options.out_dir / "servers")
    except DeployError as exc:
        progress.fail_all(options, runtime, model.name, plan, exc.summary())
        return
    run_fairness = Fairness(server_cpus=options.fairness.server_cpus, generator_cpus=options.fairness.generator_cpus,
                            cpu_shared=options.fairness.cpu_shared)
    with deployment:
        parity = check_parity(deployment.endpoint, model, runtime.parity_tolerance(model.spec))
        progress.say(f"{title}: ready in {deployment.startup_s:.2f} s, parity "
                     f"{'ok' if parity.ok else 'FAILED: ' + (parity.error or '')}")
        finished: Cell | None = None
        costs: dict[int, ModelCost | None] = {}  # the model's own predict, by batch size (profiled cells)
        while (planned := plan.next(finished)) is not None:
            measurement = planned.with_warmup_at_least(runtime.warmup_s)
            skeleton = cells.skeleton(options.scenario, options.target.name, runtime, model.name, measurement,
                                      progress.next_index())
            cell = cells.with_deployment(skeleton, deployment, parity, run_fairness)
            if not parity.ok:
                error = f"parity failed: {parity.error}" if not parity.answered else None
                finished = progress.finish(cells.failed(cell, error, ["parity check failed: not load-tested"]))
            elif not deployment.alive():
                finished = progress.finish(cells.failed(cell, "server had exited before this measurement"))
            else:
                label = f"{title} {measurement.label}"
                progress.events.fire(CellStarted(progress.next_index(), progress.total, label))
                profiling = (ProfileSettings(options.out_dir, options.generator_cpus,
                                             options.profile_rate_hz or RATE_HZ)
                             if options.profile_rate_hz or measurement.profile else None)
                if profiling is not None and measurement.batch_size not in costs:  # timed while the server idles
                    costs[measurement.batch_size] = _model_cost(options, deployment, model, measurement.batch_size)
                measured, samples = cells.measure_cell(
                    cell, deployment, model, measurement, options.scenario,
                    limits_for(options.scenario, options.profile, measurement), options.out_dir,
                    options.generator_cpus, partial(progress.tick, label), measurement.stop_when,
                    remote=options.remote,
                    profiling=profiling, priority=options.generator_priority)
                if profiling is not None:
                    measured = measured.model_copy(update={"model_cost": costs.get(measurement.batch_size)})
                finished = progress.finish(measured, samples)
                _drop_raw_csv(options.out_dir / "load" / measured.cell_id)


def _model_cost(options: RunOptions, deployment: Deployment, model: LocalModel, batch_size: int) -> ModelCost | None:
    """The model's predict timed in the runtime's environment, without the server (local target only)."""
    if deployment.python is None:
        return None
    return time_model(deployment.python, model.model_dir, cells.timer_rows_file(model, options.out_dir / "load"),
                      batch_size, options.fairness.server_cpus or options.generator_cpus,
                      options.out_dir / "profiles" / f"model-cost-{deployment.runtime.name}-{model.name}.log")


def _drop_raw_csv(folder: Path) -> None:
    """The streamed CSV files are merged into the cell's Parquet file; keep only the plan."""
    for path in folder.glob("samples-*.csv"):
        path.unlink()
