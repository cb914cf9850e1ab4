"""`bench run`: every runtime x model x measurement of a scenario, one cell at a time.

For each runtime and model the server is deployed once, checked for parity, then measured once per
load point of the scenario (sweep rate or user count, batch size). Every finished cell goes to disk at
once; a server that fails to start or dies yields cells with the error and the run goes on; Ctrl-C stops
the load, writes what was measured (the interrupted cell marked invalid) and stops every server.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import ModelSpec, Profile, RuntimeSpec, Scenario
from bench.errors import BenchError, DeployError
from bench.load.driver import LiveTick, LoadOutcome, run_load, startup_grace
from bench.load.plan import LoadPlan
from bench.load.schedule import RateStage, arrival_offsets
from bench.measure.parity import ParityResult, check_parity
from bench.models.catalog import load_dataset
from bench.models.registry import LocalModel, resolve
from bench.results.store import RunStore, environment_fingerprint
from bench.stats import (
    BOUNDARY_TOLERANCE_S,
    CellStats,
    Limits,
    Window,
    in_window,
    invalid_reasons,
    summarize,
)
from bench.targets.base import Deployment, Provisioned, Target


@dataclass(frozen=True)
class Measurement:
    """One load point of a scenario: what a cell measures."""

    label: str
    batch_size: int
    loop: str
    arrival: str
    stages: list[tuple[float, float]]  # (duration_s, rate), warm-up first; closed loop: [(total, 0)]
    users: int | None
    warmup_s: float
    duration_s: float
    offered_rps: float | None


def plan_measurements(scenario: Scenario, profile: Profile) -> list[Measurement]:
    """Expand a scenario into its measurements, durations scaled by the profile."""
    warmup = profile.warmup(scenario.warmup_s)
    points: list[tuple[str, float | None, int | None, list[tuple[float, float]]]] = []
    if scenario.loop == "closed":
        for each_users in [int(u) for u in scenario.sweep] if scenario.sweep else [scenario.users or 1]:
            points.append((f"users={each_users}", None, each_users, []))
    elif scenario.stages:
        scale = max(profile.time_scale, profile.min_duration_s / sum(s.duration_s for s in scenario.stages))
        scaled = [(max(1.0, s.duration_s * scale), s.rate) for s in scenario.stages]
        points.append(("stages", None, None, scaled))
    else:
        for each_rate in scenario.sweep or [scenario.rate or 0.0]:
            points.append((f"rate={each_rate:g}", each_rate, None, []))
    measurements = []
    for batch in scenario.batch_sizes:
        for label, rate, users, staged in points:
            if staged:
                duration = sum(d for d, _ in staged)
                offered: float | None = sum(d * r for d, r in staged) / duration
                stages = ([(warmup, staged[0][1])] if warmup else []) + staged
            elif rate is not None:
                duration = profile.duration(scenario.duration_s)
                offered = rate
                stages = [(warmup + duration, rate)]
            else:
                duration = profile.duration(scenario.duration_s)
                offered = None
                stages = [(warmup + duration, 0.0)]
            full_label = label if len(scenario.batch_sizes) == 1 else f"{label},batch={batch}"
            measurements.append(Measurement(full_label, batch, scenario.loop, scenario.arrival, stages, users,
                                            warmup, duration, offered))
    return measurements


def limits_for(scenario: Scenario, profile: Profile, measurement: Measurement) -> Limits:
    scale = min(1.0, profile.time_scale)
    return Limits(slo_ms=scenario.slo.ms, slo_percentile=scenario.slo.percentile,
                  max_error_rate=scenario.max_error_rate,
                  min_requests=max(1, math.ceil(scenario.min_requests * scale)),
                  min_duration_s=profile.min_duration_s)


@dataclass
class RunOptions:
    runtimes: list[RuntimeSpec]
    models: list[ModelSpec]
    scenario: Scenario
    profile: Profile
    target: Target
    out_dir: Path
    run_id: str
    generator_cpus: tuple[int, ...]
    fairness: dict[str, Any] = field(default_factory=dict)


class RunUI:
    """Progress hooks; the CLI prints, tests stay quiet."""

    def say(self, message: str) -> None: ...

    def cell_started(self, index: int, total: int, title: str) -> None: ...

    def tick(self, title: str, tick: LiveTick) -> None: ...

    def cell_finished(self, index: int, total: int, cell: dict[str, Any]) -> None: ...


@dataclass
class ServerSampler:
    """Samples the server's CPU and memory once a second during a measurement."""

    deployment: Deployment
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.deployment.cpu_percent()  # prime: the next reading covers one interval

    def __call__(self) -> None:
        self.times.append(time.time())
        self.cpu.append(self.deployment.cpu_percent())
        self.rss.append(self.deployment.rss_mb())

    def within(self, window: Window) -> tuple[list[float], list[float]]:
        inside = [i for i, t in enumerate(self.times) if window.start < t <= window.end + 1.0]
        return [self.cpu[i] for i in inside], [self.rss[i] for i in inside]


def _rows_file(model: LocalModel, folder: Path) -> Path:
    """Real rows of the model's dataset for the generator to send."""
    path = folder / f"rows-{model.name}.npy"
    if not path.exists():
        features, _ = load_dataset(model.spec.dataset, model.spec.input_dtype)
        np.save(path, features)
    return path


def _base_cell(options: RunOptions, runtime: RuntimeSpec, model_spec: ModelSpec, measurement: Measurement,
               index: int) -> dict[str, Any]:
    scenario = options.scenario
    return {
        "cell_id": re.sub(r"[^A-Za-z0-9.-]+", "-", f"{index:03d}-{runtime.name}-{model_spec.name}-{measurement.label}"),
        "runtime": runtime.name, "model": model_spec.name, "scenario": scenario.name,
        "target": options.target.name, "batch_size": measurement.batch_size, "label": measurement.label,
        "load": {"loop": measurement.loop, "arrival": measurement.arrival if measurement.loop == "open" else None,
                 "users": measurement.users, "stages": measurement.stages, "warmup_s": measurement.warmup_s,
                 "duration_s": measurement.duration_s, "generator_processes": scenario.generator_processes},
        "slo": {"percentile": scenario.slo.percentile, "ms": scenario.slo.ms},
        "parity": {"ok": False, "max_abs_diff": None}, "requests": 0, "errors": 0,
        "offered_rps": measurement.offered_rps, "throughput_rps": 0.0,
        "latency_ms": {name: None for name in ("p50", "p90", "p95", "p99", "p999", "max", "mean")},
        "server": {"cpu_percent_mean": None, "rss_mb_max": None, "startup_s": None},
        "valid": False, "invalid_reasons": [], "error": None,
    }


def _failed_cell(cell: dict[str, Any], error: str, reasons: list[str] | None = None) -> dict[str, Any]:
    cell["error"] = error
    cell["invalid_reasons"] = reasons or [error]
    return cell


def _measured_cell(cell: dict[str, Any], stats: CellStats, outcome: LoadOutcome, sampler: ServerSampler,
                   window: Window, deployment: Deployment, parity: ParityResult, limits: Limits,
                   options: RunOptions) -> dict[str, Any]:
    cpu, rss = sampler.within(window)
    cell.update({
        "parity": {"ok": parity.ok, "max_abs_diff": parity.max_abs_diff},
        "requests": stats.requests, "errors": stats.errors, "error_rate": stats.error_rate,
        "offered_rps": stats.offered_rps, "scheduled_rps": stats.scheduled_rps, "achieved_rps": stats.achieved_rps,
        "throughput_rps": stats.throughput_rps, "goodput_rps": stats.goodput_rps,
        "latency_ms": stats.latency_ms, "latency_ci_ms": stats.latency_ci_ms, "service_ms": stats.service_ms,
        "lateness_ms": stats.lateness_ms, "slo_met": stats.slo_met, "measured_s": stats.measured_s,
        "server": {"cpu_percent_mean": float(np.mean(cpu)) if cpu else None,
                   "cpu_percent_max": float(np.max(cpu)) if cpu else None,
                   "rss_mb_max": float(np.max(rss)) if rss else None,
                   "startup_s": round(deployment.startup_s, 3)},
        "generator": {"cpu_percent_max": outcome.generator_cpu_max, "cpu_percent_mean": outcome.generator_cpu_mean,
                      "cpus": list(options.generator_cpus)},
        "fairness": {**deployment.fairness, **options.fairness},
        "timeseries": _with_server_series(stats.timeseries, sampler, window.start),
    })
    cell["warnings"] = caveats(stats, limits)
    reasons = invalid_reasons(stats, limits, window, parity.ok, outcome.generator_cpu_max)
    if not deployment.alive():
        cell["error"] = "server exited during the measurement; see its log"
        reasons.append("server exited during the measurement")
    if outcome.interrupted:
        reasons.append("interrupted (Ctrl-C) before the measurement ended")
    cell["invalid_reasons"] = reasons
    cell["valid"] = not reasons
    return cell


def caveats(stats: CellStats, limits: Limits) -> list[str]:
    """Things a reader should know that do not make a cell invalid."""
    notes = []
    late = stats.lateness_ms.get("max")
    if late is not None and late > max(10.0, 0.1 * limits.slo_ms):
        notes.append(f"the generator sent some requests up to {late:.0f} ms late (a machine stall or an exhausted "
                     "user pool); latency counts from the scheduled time, so the delay is included")
    return notes


def _with_server_series(series: list[dict[str, Any]], sampler: ServerSampler, origin: float) -> list[dict[str, Any]]:
    by_second: dict[int, tuple[float, float]] = {}
    for moment, cpu, rss in zip(sampler.times, sampler.cpu, sampler.rss, strict=True):
        by_second[math.floor(moment - origin) - 1] = (cpu, rss)  # a reading covers the second before it
    for row in series:
        cpu_rss = by_second.get(row["t"])
        row["server_cpu_percent"], row["server_rss_mb"] = cpu_rss if cpu_rss else (None, None)
    return series


def measure(options: RunOptions, deployment: Deployment, model: LocalModel, measurement: Measurement,
            cell: dict[str, Any], parity: ParityResult, ui: RunUI, title: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """Drive one measurement against a ready server and turn its samples into a cell."""
    scenario = options.scenario
    processes = scenario.generator_processes
    start_at = time.time() + startup_grace(processes)
    users = measurement.users if measurement.loop == "closed" else scenario.max_in_flight
    plan = LoadPlan(
        base_url=deployment.endpoint.base_url, predict_path=deployment.endpoint.predict_path,
        protocol=deployment.endpoint.protocol, model_name=model.name,
        rows_file=str(_rows_file(model, options.out_dir / "load")), batch_size=measurement.batch_size,
        loop="open" if measurement.loop == "open" else "closed",
        arrival="poisson" if measurement.arrival == "poisson" else "constant",
        stages=measurement.stages, users_per_process=max(1, math.ceil((users or 1) / processes)),
        processes=processes, start_at=start_at, total_s=measurement.warmup_s + measurement.duration_s,
        request_timeout_s=scenario.request_timeout_s,
        samples_dir=str(options.out_dir / "load" / cell["cell_id"]), seed=scenario.seed,
    )
    sampler = ServerSampler(deployment)
    outcome = run_load(plan, options.generator_cpus, options.out_dir / "load" / f"{cell['cell_id']}.log",
                       on_tick=lambda tick: ui.tick(title, tick), every_second=sampler)
    window = Window(start_at + measurement.warmup_s, start_at + measurement.warmup_s + measurement.duration_s)
    limits = limits_for(scenario, options.profile, measurement)
    stats = summarize(outcome.samples, window, limits, measurement.offered_rps,
                      scheduled_rate(measurement, scenario))
    cell = _measured_cell(cell, stats, outcome, sampler, window, deployment, parity, limits, options)
    samples = outcome.samples.assign(in_window=in_window(outcome.samples["scheduled"], window))
    if outcome.interrupted:
        raise _Interrupted(cell, samples)
    return cell, samples


def scheduled_rate(measurement: Measurement, scenario: Scenario) -> float | None:
    """Requests per second the open-loop schedule holds for the measured window (the generator's plan,
    computed the same way and with the same seed): what the achieved rate is held to."""
    if measurement.loop != "open" or measurement.duration_s <= 0:
        return None
    offsets = arrival_offsets([RateStage(d, r) for d, r in measurement.stages],
                              "poisson" if measurement.arrival == "poisson" else "constant", scenario.seed)
    end = measurement.warmup_s + measurement.duration_s
    inside = (offsets >= measurement.warmup_s - BOUNDARY_TOLERANCE_S) & (offsets < end - BOUNDARY_TOLERANCE_S)
    return float(inside.sum()) / measurement.duration_s


class _Interrupted(Exception):
    def __init__(self, cell: dict[str, Any], samples: pd.DataFrame) -> None:
        super().__init__("interrupted")
        self.cell = cell
        self.samples = samples


def _runtime_meta(runtime: RuntimeSpec, provisioned: Provisioned | None) -> dict[str, Any]:
    """What the report's comparison table measures: where the runtime lives, its code, its environment
    or image."""
    return {"protocol": runtime.protocol, "settings": runtime.settings, "description": runtime.description,
            "folder": str(runtime.folder), "serving_code": runtime.serving_code,
            **(provisioned.meta if provisioned else {})}


def run_benchmark(options: RunOptions, ui: RunUI) -> RunStore:
    """Run every cell; returns the store (status complete), or raises KeyboardInterrupt after saving."""
    measurements = plan_measurements(options.scenario, options.profile)
    provisioned: dict[str, Provisioned] = {}
    env_errors: dict[str, str] = {}
    for runtime in options.runtimes:
        try:
            provisioned[runtime.name] = options.target.provision(runtime, options.out_dir / "servers", ui.say)
        except BenchError as exc:
            env_errors[runtime.name] = f"{options.target.name} provisioning failed: {exc.message.splitlines()[0]}"
    models = {spec.name: resolve(spec, ui.say) for spec in options.models}
    store = RunStore.create(options.out_dir, options.run_id, {
        "environment": environment_fingerprint({name: p.packages for name, p in provisioned.items()}),
        "scenario": options.scenario.model_dump(), "profile": options.profile.model_dump(),
        "target": options.target.name, "fairness": options.fairness,
        "runtimes": {r.name: _runtime_meta(r, provisioned.get(r.name)) for r in options.runtimes},
        "models": {name: {"version": m.version, "fingerprint": m.fingerprint, "framework": m.spec.framework}
                   for name, m in models.items()},
    })
    total = len(options.runtimes) * len(options.models) * len(measurements)
    index = 0
    try:
        for runtime in options.runtimes:
            for model_spec in options.models:
                model = models[model_spec.name]
                cells = [_base_cell(options, runtime, model_spec, m, index + k + 1) for k, m in enumerate(measurements)]
                if runtime.name in env_errors:
                    for cell in cells:
                        index += 1
                        store.add_cell(_failed_cell(cell, env_errors[runtime.name]), None)
                        ui.cell_finished(index, total, cell)
                    continue
                index = _run_pair(options, store, runtime, model, measurements, cells, index, total, ui)
    except _Interrupted as stop:
        store.add_cell(stop.cell, stop.samples)
        store.finish("interrupted")
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        store.finish("interrupted")
        raise
    sweeps = sweep_summary(store.payload["cells"]) if options.scenario.sweep else []
    if sweeps:
        store.set("sweeps", sweeps)
    store.finish("complete")
    return store


def _run_pair(options: RunOptions, store: RunStore, runtime: RuntimeSpec, model: LocalModel,
              measurements: list[Measurement], cells: list[dict[str, Any]], index: int, total: int,
              ui: RunUI) -> int:
    title = f"{runtime.name} x {model.name}"
    ui.say(f"{title}: starting on {options.target.name}")
    try:
        deployment = options.target.deploy(runtime, model, options.out_dir / "servers")
    except DeployError as exc:
        last = exc.log_tail.strip().splitlines()[-1:] if exc.log_tail else []
        error = exc.message + (f" | last log line: {last[0][:200]}" if last else "")
        for cell in cells:
            index += 1
            store.add_cell(_failed_cell(cell, error), None)
            ui.cell_finished(index, total, cell)
        return index
    with deployment:
        parity = check_parity(deployment.endpoint, model)
        ui.say(f"{title}: ready in {deployment.startup_s:.2f} s, parity "
               f"{'ok' if parity.ok else 'FAILED: ' + (parity.error or '')}")
        for measurement, cell in zip(measurements, cells, strict=True):
            index += 1
            cell["server"]["startup_s"] = round(deployment.startup_s, 3)
            cell["parity"] = {"ok": parity.ok, "max_abs_diff": parity.max_abs_diff}
            if not parity.ok:
                _failed_cell(cell, f"parity failed: {parity.error}", ["parity check failed: not load-tested"])
                cell["error"] = None if parity.answered else cell["error"]
                store.add_cell(cell, None)
            elif not deployment.alive():
                store.add_cell(_failed_cell(cell, "server had exited before this measurement"), None)
            else:
                ui.cell_started(index, total, f"{title} {measurement.label}")
                cell, samples = measure(options, deployment, model, measurement, cell, parity, ui,
                                        f"{title} {measurement.label}")
                store.add_cell(cell, samples)
                _drop_raw_csv(options.out_dir / "load" / cell["cell_id"])
            ui.cell_finished(index, total, cell)
    return index


def _drop_raw_csv(folder: Path) -> None:
    """The streamed CSV files are merged into the cell's Parquet file; keep only the plan."""
    for path in folder.glob("samples-*.csv"):
        path.unlink()


def sweep_summary(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per runtime, model and batch size: the curve, and the highest offered load whose SLO was met."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["runtime"], cell["model"], cell["batch_size"]), []).append(cell)
    summary = []
    for (runtime, model, batch), members in groups.items():
        points = [{"label": c["label"], "offered_rps": c.get("offered_rps"), "users": c["load"]["users"],
                   "throughput_rps": c.get("throughput_rps"), "p99_ms": c["latency_ms"].get("p99"),
                   "slo_met": c.get("slo_met"), "valid": c.get("valid")} for c in members]
        passing = [p for p in points if p["slo_met"] and p["valid"]]
        best = max(passing, key=lambda p: p["offered_rps"] or p["throughput_rps"] or 0, default=None)
        summary.append({"runtime": runtime, "model": model, "batch_size": batch, "points": points,
                        "max_load_within_slo": best["label"] if best else None,
                        "max_throughput_within_slo_rps": best["throughput_rps"] if best else None})
    return summary

