"""The run-level records of the searches over cells: sweeps, capacity, tuning and rounds (part of results.json,
whose changelog is in bench.results.schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config import Scalar, Slo
from bench.results.record import Record


class SweepPoint(Record):
    """One load of a sweep, as the curve needs it."""

    label: str
    offered_rps: float | None = None
    users: int | None = None
    throughput_rps: float | None = None
    p99_ms: float | None = None
    slo_met: bool | None = None
    valid: bool = False


class Sweep(Record):
    """Per runtime, model and batch size: the curve, and the highest load whose SLO was met."""

    runtime: str
    model: str
    batch_size: int
    points: tuple[SweepPoint, ...]
    max_load_within_slo: str | None = None
    max_throughput_within_slo_rps: float | None = None


class CapacityRecord(Record):
    """The highest open-loop rate at which one runtime x model x configuration met its SLO (bench capacity).

    capacity_rps None: not even the lowest rate passed. ci_low/ci_high bound the rates where the probes could
    not tell a pass from a failure (None: no probe was that clear; ci_high None is open above). limited_by
    says when the search stopped at a limit (the generator, the highest or lowest rate) instead of a knee."""

    runtime: str
    model: str
    config: dict[str, Scalar] = Field(default_factory=dict)
    slo: Slo
    capacity_rps: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    limited_by: Literal["generator", "max rate", "min rate"] | None = None
    resolution: float
    probes: tuple[str, ...] = ()  # the load labels of its cells, in the order probed


class TunedConfig(Record):
    """One configuration bench tune measured: its knob values and capacity (see CapacityRecord), its p99
    at the runtime's common rate (the frontier's other axis) and the server's cost there."""

    config: dict[str, Scalar]
    capacity_rps: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    limited_by: Literal["generator", "max rate", "min rate"] | None = None
    p99_at_common_ms: float | None = None
    cpu_s_per_1000: float | None = None
    rss_mb_max: float | None = None
    over_budget: str | None = None  # measured, but over the memory budget: never the best


class SkippedConfig(Record):
    config: dict[str, Scalar]
    reason: str


class TuningRecord(Record):
    """bench tune's answer for one runtime x model: the best configuration within the budget, beside the
    default, and every configuration it tried or skipped (search: grid or coordinate descent)."""

    runtime: str
    model: str
    slo: Slo
    search: Literal["grid", "coordinate descent"]
    server_cpus: int
    memory_mb: float | None = None
    common_rps: float | None = None  # the rate every configuration's p99_at_common_ms is read at
    default: TunedConfig
    best: TunedConfig
    tried: tuple[TunedConfig, ...] = ()
    skipped: tuple[SkippedConfig, ...] = ()


class RoundsRecord(Record):
    """One runtime x model x load point over the rounds of bench run --rounds: the SLO percentile of every
    round pooled, its interval (rounds, then seconds within them, resampled) and each round's own figure."""

    runtime: str
    model: str
    label: str
    percentile: str
    rounds: int
    valid_rounds: int
    estimate_ms: float | None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    per_round_ms: tuple[float | None, ...] = ()
