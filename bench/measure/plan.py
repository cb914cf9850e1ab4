"""A scenario expanded into its measurements: the load points a cell measures, durations scaled by the
run length, and the limits a valid cell must meet."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bench.config import RunLength, Scenario
from bench.load.driver import StopRule
from bench.load.schedule import ArrivalProcess, RateStage, count_between
from bench.load.trace import read_trace
from bench.results.samples import BOUNDARY_TOLERANCE_S
from bench.stats import Limits


@dataclass(frozen=True)
class Measurement:
    """One load point of a scenario: what a cell measures."""

    label: str
    batch_size: int
    loop: str
    arrival: ArrivalProcess
    stages: list[tuple[float, float]]  # (duration_s, rate), warm-up first; closed loop: [(total, 0)]
    users: int | None
    warmup_s: float
    duration_s: float
    offered_rps: float | None
    stop_when: StopRule | None = None  # cut a clearly failed probe short (capacity search)
    seed: int | None = None  # another draw of the arrivals than the scenario's (each capacity probe its own)
    round: int | None = None  # bench run --rounds: the interleaved round it belongs to
    profile: bool = False  # sample the server over the window (bench run --sample-server, tune's best)

    def arrival_seed(self, scenario: Scenario) -> int:
        return scenario.seed if self.seed is None else self.seed

    def with_warmup_at_least(self, seconds: float) -> Measurement:
        """The same window after at least `seconds` of warm-up at the first rate (runtime.yaml's warmup_s:
        a runtime that is slow for a while after it reports ready). The window itself is unchanged."""
        extra = seconds - self.warmup_s
        if extra <= 0:
            return self
        (first_s, first_rate), rest = self.stages[0], self.stages[1:]
        if self.warmup_s > 0 or not rest:  # the first stage holds the warm-up (or it is the only stage)
            stages = [(first_s + extra, first_rate), *rest]
        else:
            stages = [(extra, first_rate), *self.stages]
        return replace(self, stages=stages, warmup_s=seconds)


def arrival_process(scenario: Scenario) -> ArrivalProcess:
    return ArrivalProcess(scenario.arrival, scenario.arrival_cv, scenario.arrivals_file)


def plan_measurements(scenario: Scenario, length: RunLength) -> list[Measurement]:
    """Expand a scenario into its measurements, durations scaled by the run length."""
    warmup = length.warmup(scenario.warmup_s)
    points: list[tuple[str, float | None, int | None, list[tuple[float, float]]]] = []
    if scenario.loop == "closed":
        for each_users in [int(u) for u in scenario.sweep] if scenario.sweep else [scenario.users or 1]:
            points.append((f"users={each_users}", None, each_users, []))
    elif scenario.stages:
        scale = max(length.time_scale, length.min_duration_s / sum(s.duration_s for s in scenario.stages))
        scaled = [(max(1.0, s.duration_s * scale), s.rate) for s in scenario.stages]
        points.append(("stages", None, None, scaled))
    else:
        trace_rps = read_trace(scenario.arrivals_file).mean_rps if scenario.arrivals_file else None
        for each_rate in scenario.sweep or [scenario.rate or 0.0]:
            label = f"scale={each_rate / trace_rps:.4g}" if trace_rps else f"rate={each_rate:g}"
            points.append((label, each_rate, None, []))
    measurements = []
    for batch in scenario.batch_sizes:
        for label, rate, users, staged in points:
            if staged:
                duration = sum(d for d, _ in staged)
                offered: float | None = sum(d * r for d, r in staged) / duration
                stages = ([(warmup, staged[0][1])] if warmup else []) + staged
            elif rate is not None:
                duration = length.duration(scenario.duration_s)
                offered = rate
                stages = [(warmup + duration, rate)]
            else:
                duration = length.duration(scenario.duration_s)
                offered = None
                stages = [(warmup + duration, 0.0)]
            full_label = label if len(scenario.batch_sizes) == 1 else f"{label},batch={batch}"
            measurements.append(Measurement(full_label, batch, scenario.loop, arrival_process(scenario), stages, users,
                                            warmup, duration, offered))
    return measurements


def limits_for(scenario: Scenario, length: RunLength, measurement: Measurement) -> Limits:
    scale = min(1.0, length.time_scale)
    return Limits(slo_ms=scenario.slo.ms, slo_percentile=scenario.slo.percentile,
                  max_error_rate=scenario.max_error_rate,
                  min_requests=max(1, math.ceil(scenario.min_requests * scale)),
                  min_duration_s=length.min_duration_s)


def scheduled_rate(measurement: Measurement, scenario: Scenario) -> float | None:
    """Requests per second the open-loop schedule holds for the measured window (the generator's plan,
    computed the same way and with the same seed): what the achieved rate is held to."""
    if measurement.loop != "open" or measurement.duration_s <= 0:
        return None
    end = measurement.warmup_s + measurement.duration_s
    inside = count_between([RateStage(d, r) for d, r in measurement.stages], measurement.arrival,
                           measurement.arrival_seed(scenario), measurement.warmup_s - BOUNDARY_TOLERANCE_S,
                           end - BOUNDARY_TOLERANCE_S, warmup_s=measurement.warmup_s)
    return inside / measurement.duration_s
