"""One cell: drive one measurement against a ready server and turn its raw samples into a typed Cell.

A cell starts as a skeleton (identity and load point) so that a runtime that never starts, or fails
parity, still leaves a cell with its reasons; a measured cell adds the statistics, the server's usage
and the validity verdict.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from bench.config import RuntimeSpec, Scenario
from bench.load.bodies import request_bodies, write_bodies
from bench.load.driver import LiveTick, LoadOutcome, StopRule, run_load, startup_grace
from bench.load.plan import LoadPlan, RemoteWorkers
from bench.measure.parity import ParityResult
from bench.measure.plan import Measurement, scheduled_rate
from bench.measure.sampler import ServerSampler
from bench.measure.workers import generator_workers, worker_reasons
from bench.models.catalog import load_dataset
from bench.models.registry import LocalModel
from bench.models.request_bodies import read_lines
from bench.models.request_rows import load_rows
from bench.processes import GeneratorPriority
from bench.results.sample_file import ParquetSamples
from bench.results.schema import (
    Cell,
    Fairness,
    GeneratorUsage,
    LoadPoint,
    Parity,
    Rates,
    ServerProfile,
    ServerUsage,
    Validity,
)
from bench.server_time.recorder import ProfileSettings, Recording
from bench.server_time.rules import Classifier
from bench.server_time.server_metrics import MetricsScraper
from bench.stats import (
    LATENESS_INVALID_SHARE,
    LATENESS_WARN_SHARE,
    CellStats,
    Limits,
    Window,
    generator_late,
    invalid_reasons,
    summarize,
)
from bench.targets.base import Deployment

RUN_FAIRNESS_KEYS = ("server_cpus", "generator_cpus", "cpu_shared", "threads_env")
TickHandler = Callable[[LiveTick], None]


def skeleton(scenario: Scenario, target: str, runtime: RuntimeSpec, model: str, measurement: Measurement,
             index: int) -> Cell:
    """The cell before anything is measured: who, what, and the load it will offer."""
    return Cell(
        cell_id=re.sub(r"[^A-Za-z0-9.-]+", "-", f"{index:03d}-{runtime.name}-{model}-{measurement.label}"),
        runtime=runtime.name, model=model, scenario=scenario.name, target=target,
        batch_size=measurement.batch_size, label=measurement.label,
        load=LoadPoint(loop="open" if measurement.loop == "open" else "closed",
                       arrival=measurement.arrival.kind if measurement.loop == "open" else None,
                       arrival_cv=measurement.arrival.cv if measurement.arrival.kind == "gamma" else None,
                       trace_sha256=measurement.arrival.trace_sha256,
                       users=measurement.users, stages=tuple(measurement.stages), warmup_s=measurement.warmup_s,
                       duration_s=measurement.duration_s, generator_processes=scenario.generator_processes,
                       offered_rps=measurement.offered_rps, seed=measurement.arrival_seed(scenario)),
        slo=scenario.slo, fairness=Fairness(settings=dict(runtime.settings)), config=dict(runtime.config),
        round=measurement.round,
    )


def failed(cell: Cell, error: str | None, reasons: list[str] | None = None) -> Cell:
    """A cell that was not measured, and why."""
    reasons = reasons or ([error] if error else [])
    return cell.model_copy(update={"validity": Validity(valid=False, reasons=tuple(reasons), error=error)})


def with_deployment(cell: Cell, deployment: Deployment, parity: ParityResult, run_fairness: Fairness) -> Cell:
    """What every cell of a started server records, measured or not: startup, parity, fairness."""
    flat = deployment.fairness
    settings = dict(deployment.runtime.settings)
    target_facts = {key: value if isinstance(value, str | int | float | bool) else str(value)
                    for key, value in flat.items()
                    if key not in settings and key not in RUN_FAIRNESS_KEYS and value is not None}
    threads = flat.get("threads_env")
    fairness = run_fairness.model_copy(update={
        "threads_env": threads if isinstance(threads, int) else None, "settings": settings, "target": target_facts})
    return cell.model_copy(update={
        "server": ServerUsage(startup_s=round(deployment.startup_s, 3)),
        "parity": Parity(ok=parity.ok if parity.compared else None, max_abs_diff=parity.max_abs_diff),
        "fairness": fairness})


def caveats(stats: CellStats, limits: Limits) -> list[str]:
    """Things a reader should know that do not make a cell invalid."""
    notes = []
    share = generator_late(stats)
    if LATENESS_WARN_SHARE < share <= LATENESS_INVALID_SHARE and not stats.counts.queued:
        notes.append(f"the generator's lateness (p50 {stats.lateness.p50:.3f} ms) is {share:.0%} of the latency p50: "
                     "part of this latency is the generator's")
    late = stats.lateness.max
    if late is not None and late > max(10.0, 0.1 * limits.slo_ms):
        notes.append(f"the generator sent some requests up to {late:.0f} ms late (a machine stall or an exhausted "
                     "user pool); latency counts from the scheduled time, so the delay is included")
    return notes


def _measured(cell: Cell, stats: CellStats, outcome: LoadOutcome, sampler: ServerSampler, window: Window,
              deployment: Deployment, parity_ok: bool, limits: Limits, generator_cpus: tuple[int, ...]) -> Cell:
    cpu, rss = sampler.within(window)
    reasons = invalid_reasons(stats, limits, window, parity_ok, outcome.generator_cpu_max, loop=cell.load.loop)
    error = None
    if not deployment.alive():
        error = "server exited during the measurement; see its log"
        reasons.append("server exited during the measurement")
    if outcome.interrupted:
        reasons.append("interrupted (Ctrl-C) before the measurement ended")
    if outcome.stopped_early:
        reasons.append(f"stopped early: {outcome.stopped_early}")
    reasons += worker_reasons(outcome.workers, cell.load.generator_processes)
    if outcome.master_error:
        reasons.append(outcome.master_error)
    warnings = caveats(stats, limits)
    if outcome.refused:
        warnings.append(f"refused {len(outcome.refused)} connection(s) that did not hold the run's worker token: "
                        f"{', '.join(outcome.refused)}")
    return cell.model_copy(update={
        "load": cell.load.model_copy(update={"offered_rps": stats.offered_rps, "scheduled_rps": stats.scheduled_rps}),
        "counts": stats.counts,
        "rates": Rates(achieved_rps=stats.achieved_rps, throughput_rps=stats.throughput_rps,
                       goodput_rps=stats.goodput_rps),
        "latency": stats.latency, "latency_ok": stats.latency_ok, "latency_includes": "all scheduled",
        "latency_ci": stats.latency_ci, "service": stats.service,
        "lateness": stats.lateness, "slo_met": stats.slo_met, "measured_s": stats.measured_s,
        "server": ServerUsage(cpu_percent_mean=float(np.mean(cpu)) if cpu else None,
                              cpu_percent_max=float(np.max(cpu)) if cpu else None,
                              rss_mb_max=float(np.max(rss)) if rss else None, startup_s=cell.server.startup_s,
                              cpu_s_per_1000=cpu_seconds_per_1000(float(np.mean(cpu)) if cpu else None,
                                                                  stats.throughput_rps)),
        "generator": GeneratorUsage(cpu_percent_max=outcome.generator_cpu_max,
                                    cpu_percent_mean=outcome.generator_cpu_mean,
                                    cpus=() if outcome.workers else generator_cpus,
                                    workers=generator_workers(outcome.workers), scheduling=outcome.scheduling),
        "timeseries": tuple(sampler.merge_into(stats.timeseries, window.start)),
        "validity": Validity(valid=not reasons, reasons=tuple(reasons), error=error,
                             warnings=tuple(warnings)),
    })


DISTINCT_BODIES = 64  # requests are drawn from this many encoded bodies


def cpu_seconds_per_1000(cpu_percent_mean: float | None, completed_per_s: float) -> float | None:
    """What 1,000 predictions cost the server in CPU time: its mean CPU over the window (100% is one
    core-second per second) divided by the predictions completed per second."""
    if cpu_percent_mean is None or completed_per_s <= 0:
        return None
    return cpu_percent_mean / 100.0 / completed_per_s * 1000.0


def rows_file(model: LocalModel, folder: Path) -> Path:
    """The rows the load draws its requests from: a team's own (--data, or its input example), else the
    reference model's whole dataset."""
    if model.rows_file is not None:
        return model.rows_file
    path = folder / f"rows-{model.name}.npy"
    if not path.exists():
        features, _ = load_dataset(model.spec.dataset, model.spec.input_dtype)
        np.save(path, features)
    return path


def timer_rows_file(model: LocalModel, folder: Path) -> Path:
    """The rows for the model's own predict, timed in the runtime's environment: a DataFrame as JSON records
    (not every runtime's environment reads Parquet; JSON keeps the column types the signature restores)."""
    rows = rows_file(model, folder)
    if rows.suffix != ".parquet":
        return rows
    path = folder / f"rows-{model.name}.jsonl"
    if not path.exists():
        frame = load_rows(rows)
        assert not isinstance(frame, np.ndarray)
        frame.to_json(path, orient="records", lines=True)
    return path


def bodies_file(model: LocalModel, protocol: str, batch_size: int, seed: int, folder: Path) -> Path:
    """The requests of one cell, encoded once in the runtime's protocol: DISTINCT_BODIES bodies of batch_size
    rows drawn with the seed, so every runtime of a run sends the same rows."""
    path = folder / f"bodies-{model.name}-{protocol}-b{batch_size}-s{seed}.bin"
    if path.exists():
        return path
    if model.bodies_file is not None:  # the team's own bodies, as they are, in the file's order
        return write_bodies(path, read_lines(model.bodies_file))
    rows = load_rows(rows_file(model, folder))
    return write_bodies(path, request_bodies(rows, protocol, model.name, batch_size, DISTINCT_BODIES, seed))


def _profile(recording: Recording | None, deployment: Deployment, cell: Cell) -> ServerProfile:
    if recording is None:
        return ServerProfile(error=f"the {cell.target} target cannot see the server's processes to sample them")
    recording.stop()
    return recording.profile(Classifier.for_runtime(deployment.runtime.profile_rules),
                             f"{cell.runtime} x {cell.model} {cell.label}")


class Interrupted(Exception):
    """Ctrl-C during a measurement: carries the partial cell and its samples so they are kept."""

    def __init__(self, cell: Cell, samples: ParquetSamples) -> None:
        super().__init__("interrupted")
        self.cell = cell
        self.samples = samples


def _scraper(deployment: Deployment) -> MetricsScraper | None:
    """The server's Prometheus request-duration series, read each second, when it publishes one."""
    spec, url = deployment.runtime.metrics, deployment.endpoint.metrics_url
    return MetricsScraper(url, spec) if spec is not None and url else None


def _each(calls: tuple[Callable[[], None], ...]) -> None:
    for call in calls:
        call()


def measure_cell(cell: Cell, deployment: Deployment, model: LocalModel, measurement: Measurement,
                 scenario: Scenario, limits: Limits, out_dir: Path, generator_cpus: tuple[int, ...],
                 on_tick: TickHandler, stop_when: StopRule | None = None, *,
                 profiling: ProfileSettings | None = None, remote: RemoteWorkers | None = None,
                 priority: GeneratorPriority) -> tuple[Cell, ParquetSamples]:
    """Drive one measurement against a ready server; the cell and its raw samples (in_window marked).
    priority: the generator's scheduling class (bench.cli.options.generator_priority).

    profiling: sample the server's process tree over the measured window (bench run --sample-server)."""
    # remote: remote workers (bench run --expect-workers), whose master sets scheduled time zero once they are
    # ready; the window follows it
    processes = remote.count if remote is not None else scenario.generator_processes
    start_at = time.time() + startup_grace(processes)
    users = measurement.users if measurement.loop == "closed" else scenario.max_in_flight
    plan = LoadPlan(
        base_url=deployment.endpoint.base_url, predict_path=deployment.endpoint.predict_path,
        protocol=deployment.endpoint.protocol, model_name=model.name,
        bodies_file=str(bodies_file(model, deployment.endpoint.protocol, measurement.batch_size,
                                    measurement.arrival_seed(scenario), out_dir / "load")),
        batch_size=measurement.batch_size,
        loop="open" if measurement.loop == "open" else "closed",
        arrival=measurement.arrival.kind, arrival_cv=measurement.arrival.cv, trace_file=measurement.arrival.trace_file,
        stages=measurement.stages, users_per_process=max(1, math.ceil((users or 1) / processes)),
        processes=processes, start_at=start_at, total_s=measurement.warmup_s + measurement.duration_s,
        request_timeout_s=scenario.request_timeout_s,
        samples_dir=str(out_dir / "load" / cell.cell_id), seed=measurement.arrival_seed(scenario),
        warmup_s=measurement.warmup_s,
        verify_tls=deployment.endpoint.verify_tls, ca_cert=deployment.endpoint.ca_cert,
    )
    if remote is not None:
        plan = replace(plan, remote_workers=True, master_bind=remote.bind, master_port=remote.port,
                       worker_wait_s=remote.wait_s, base_url=deployment.endpoint.worker_base_url or plan.base_url)
    sampler = ServerSampler(deployment)
    scraper = _scraper(deployment)
    window = Window(start_at + measurement.warmup_s, start_at + measurement.warmup_s + measurement.duration_s)
    recording = None
    if profiling is not None and deployment.tree is not None:
        recording = Recording(profiling, deployment.tree, cell.cell_id)
        recording.schedule(window.start, measurement.duration_s)
    try:
        outcome = run_load(plan, generator_cpus, out_dir / "load" / f"{cell.cell_id}.log", on_tick=on_tick,
                           every_second=sampler if scraper is None else partial(_each, (sampler, scraper)),
                           stop_when=stop_when, window=(window.start, window.end),
                           headers=deployment.endpoint.headers if remote is None or remote.share_headers else (),
                           worker_token=remote.token if remote is not None else None, priority=priority)
    finally:
        if recording is not None and time.time() < window.end:
            recording.interrupt()  # the load ended early: keep what was sampled
    if outcome.error is not None:
        if recording is not None:
            recording.stop()  # nothing to classify, but py-spy must not sample on to its --duration
        return failed(cell, outcome.error), outcome.samples
    window = Window(outcome.start_at + measurement.warmup_s,
                    outcome.start_at + measurement.warmup_s + measurement.duration_s)
    stats = summarize(outcome.samples, window, limits, measurement.offered_rps, scheduled_rate(measurement, scenario))
    measured = _measured(cell, stats, outcome, sampler, window, deployment, cell.parity.ok is not False, limits,
                         generator_cpus)
    if profiling is not None:
        measured = measured.model_copy(update={"server_profile": _profile(recording, deployment, cell)})
    if scraper is not None:
        measured = measured.model_copy(update={"server_metrics": scraper.summary(window.start, window.end)})
    samples = outcome.samples
    if outcome.interrupted:
        raise Interrupted(measured, samples)
    return measured, samples


