"""results.json as typed, frozen models: the one shape every writer and reader of a run uses.

Format changelog (SCHEMA_VERSION; bench.results.upgrade turns every older file into the current shape):

1. 2026-11: cells as flat dictionaries (runtime, model, ..., latency_ms, server {...}, valid,
   invalid_reasons, error), grown without a version bump: label, cell_id, load, timeseries,
   latency_ci_ms, service_ms, lateness_ms, goodput, scheduled_rps, warnings, sweeps. The earliest
   files hold only the minimum DESIGN.md lists.
2. 2026-12: cells grouped into typed parts (load point, counts, rates, latency, server and generator
   usage, parity, validity, fairness with the runtime's knobs apart from the target's facts); the run
   records, per runtime, the facts its comparison table shows (serving code lines, packages,
   environment or image size), so a report never reads the runtime folders or caches again.
3. 2026-12: a run-level `capacity` list (bench capacity): per runtime x model x configuration the
   highest rate within the SLO, its interval, what limited the search, and the labels of its probes;
   each cell's load point records its arrival seed (capacity probes each draw their own).
4. 2026-12: a run-level `tuning` list (bench tune): per runtime x model the default and the best
   configuration with their capacities, and every configuration tried or skipped; each cell records its
   configuration (`config`, the knob values), its `round` (bench run --rounds) and the server's CPU
   seconds per 1,000 predictions (`server.cpu_s_per_1000`); a run-level `rounds` list (bench run
   --rounds): per runtime x model x load point the rounds combined, with a two-level bootstrap interval;
   the run's `price_per_core_hour` when one was given.
5. 2026-12: every scheduled request accounted for. A cell's counts are scheduled, sent, completed,
   failed, dropped (scheduled inside the window, never sent before the run ended: the user pool was
   exhausted) and queued (sent late because every connection was busy), with scheduled = sent + dropped.
   `latency` now covers every scheduled request (`latency_includes: "all scheduled"`: a failed request
   at the latency it failed after, a dropped one at the end of the run, a lower bound); `latency_ok`
   keeps the success-only figures. Files before 5 upgrade with `latency_includes: "successful"` (their
   latency was success-only), scheduled = sent = requests and dropped = queued = None (never recorded).
6. 2026-12: where the server's time goes. A sampled cell (`bench run --sample-server`, then `--profile-server`) has
   `server_profile`: py-spy's rate and sample count, the shares of samples in model, serialisation, HTTP,
   framework, other and unclassified code (summing to 1), and its flame graph and collapsed stacks
   (paths in the run folder), or the reason there is none; `model_cost` is the model's own predict timed
   in-process in the runtime's environment. Older cells upgrade with neither (None).
7. 2026-12: remote load generators (`bench run --expect-workers N`, `bench worker`): a cell's
   `generator.workers` lists each worker's index (the samples' `worker` column), host and address, its
   clock offset from the master with the round trip and drift that bound it, when it joined, how late it
   sent (mean, max), its own CPU and whether every sample it recorded arrived. Older cells have none (a
   local generator).
8. 2026-12: the server's own clock. A cell of a runtime that declares Prometheus metrics (runtime.yaml
   `metrics:`, or the url target's `--metrics-url`) has `server_metrics`: the page and series scraped, how
   many requests the server counted in the window, their mean and (from histogram buckets) p50 and p99,
   and one row per second, or the reason there are none. Older cells have none.
9. 2026-12: a profile's `waits_counted`: py-spy could not tell the server's waiting threads from running ones,
   so waits counted as work. True for Docker profiles before 9 (py-spy sampled the container from the host);
   since 9 py-spy samples a container from inside its pid namespace, and it is False.
10. 2026-12: the server's queue. `server_metrics` has `queue_series` and `queue_mean_ms`: of the server's
   own mean, the time the requests waited inside it before being worked on, for a runtime that publishes it
   (runtime.yaml `metrics: queue`; TorchServe). Older cells have none.
11. 2026-12: a team's own model. A model record says where a model came from (`source`: the URI as given,
   credentials redacted; `resolved`: the version it named; `content_hash` of the artifact), its `flavours`,
   its signature's `inputs` and `outputs`, its `predict_fn`, `requirements` and `input_kind`, and where the
   rows came from (`data`); reference models have `source: null`. The run lists the runtime x model pairs
   it did not measure because the runtime cannot serve the model (`unsupported`, each with its reason).
   Older files upgrade with no unsupported pairs recorded (they were skipped silently) and kind reference.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config import PERCENTILE_NAMES, RunLength, Scalar, Scenario, Slo
from bench.results.model_records import ModelRecord, UnsupportedPair
from bench.results.profiles import ModelCost, ProfileShares, ServerMetrics, ServerProfile
from bench.results.record import Record
from bench.results.searches import (
    CapacityRecord,
    RoundsRecord,
    SkippedConfig,
    Sweep,
    SweepPoint,
    TunedConfig,
    TuningRecord,
)

# Every record is imported from here, the search records and the base included.
__all__ = [
    "LATENCY_POLICY_TEXT", "SCHEMA_VERSION", "CapacityRecord", "Cell", "CellStatus", "Counts", "Environment",
    "Fairness", "GeneratorUsage", "GeneratorWorker", "Interval", "Latency", "LatencyIntervals", "LatencyPolicy",
    "LoadPoint",
    "Measured", "ModelCost", "ModelRecord", "Parity", "ProfileShares", "Provisioning", "Rates", "Record",
    "RoundsRecord", "RunFairness", "RunResults", "RunStatus", "RuntimeRecord", "Second", "ServerProfile",
    "ServerUsage", "ServingCode", "SkippedConfig", "Sweep", "SweepPoint", "TunedConfig", "TuningRecord",
    "UnsupportedPair", "Validity",
]

SCHEMA_VERSION = 11

CellStatus = Literal["valid", "invalid", "failed"]
# What a cell's latency percentiles are over: every request scheduled in the window (a failed one at the
# latency it failed after, a dropped one at the end of the run), or, in files before schema 5, the
# successful ones only.
LatencyPolicy = Literal["all scheduled", "successful"]
LATENCY_POLICY_TEXT = {
    "all scheduled": "every scheduled request: failed ones at the time they failed, dropped ones (never sent) "
                     "at the end of the run, a lower bound",
    "successful": "successful requests only (a results file from before schema 5)",
}


class Latency(Record):
    """Percentiles (numpy's linear interpolation), max and mean, in milliseconds; None when nothing was
    measured."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    mean: float | None = None

    def percentile(self, name: str) -> float | None:
        if name not in PERCENTILE_NAMES:
            raise KeyError(name)
        value: float | None = getattr(self, name)
        return value


class Interval(Record):
    low: float
    high: float


class LatencyIntervals(Record):
    """95% bootstrap intervals of the percentiles a ranking rests on."""

    p50: Interval | None = None
    p99: Interval | None = None


class LoadPoint(Record):
    """What the cell offered: loop, arrivals, stages (duration s, rate) with the warm-up first."""

    loop: Literal["open", "closed"] | None = None
    arrival: Literal["constant", "poisson", "gamma", "trace"] | None = None
    arrival_cv: float | None = None  # gamma arrivals: the gaps' coefficient of variation
    trace_sha256: str | None = None  # trace arrivals: the replayed file's hash (its rate: offered_rps)
    users: int | None = None
    stages: tuple[tuple[float, float], ...] = ()
    warmup_s: float | None = None
    duration_s: float | None = None
    generator_processes: int = 1
    offered_rps: float | None = None
    # requests per second the seeded schedule itself held for the window (a Poisson draw's realisation)
    scheduled_rps: float | None = None
    seed: int | None = None  # the arrival draw (None: recorded only at run level, in the scenario)


class Counts(Record):
    """Requests scheduled inside the measured window, and what became of each: sent (completed or failed)
    or dropped (never sent before the end: every connection stayed busy). scheduled = sent + dropped."""

    scheduled: int = 0
    sent: int = 0
    completed: int = 0
    failed: int = 0
    dropped: int | None = 0  # None: a file from before drops were recorded
    queued: int | None = 0  # sent, but only after waiting for a free connection (the pool was exhausted)

    @property
    def requests(self) -> int:
        return self.scheduled

    @property
    def errors(self) -> int:
        """Scheduled requests that did not succeed: failed, or never sent."""
        return self.failed + (self.dropped or 0)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.scheduled if self.scheduled else None


class Rates(Record):
    """Requests per second over the measured window: sent, completed, completed within the SLO."""

    achieved_rps: float | None = None
    throughput_rps: float = 0.0
    goodput_rps: float | None = None


class ServerUsage(Record):
    """The server's whole process tree (workers included) during the measured window."""

    cpu_percent_mean: float | None = None
    cpu_percent_max: float | None = None
    rss_mb_max: float | None = None
    startup_s: float | None = None
    cpu_s_per_1000: float | None = None  # server CPU-seconds per 1,000 completed predictions (cost)


class GeneratorWorker(Record):
    """One remote generator (bench worker) in a cell: who it was, its clock, how late it sent."""

    index: int  # the samples' `worker` column
    host: str
    address: str = ""  # the address it reached the master from
    joined_after_s: float | None = None  # after the master started listening
    clock_offset_ms: float | None = None  # the master's clock minus the worker's (corrected for)
    clock_rtt_ms: float | None = None  # of the exchange the offset came from: the offset is within half of it
    clock_drift_ms: float | None = None  # the offset at the end minus at the start
    samples: int = 0
    late_mean_ms: float | None = None
    late_max_ms: float | None = None
    cpu_percent_max: float | None = None
    cpu_percent_mean: float | None = None
    finished: bool = False  # every sample it recorded reached the master


class GeneratorUsage(Record):
    """The load generator's own CPU: above 90% its timing cannot be trusted. With remote workers, the
    highest of theirs, and each worker's own record."""

    cpu_percent_max: float | None = None
    cpu_percent_mean: float | None = None
    cpus: tuple[int, ...] = ()
    workers: tuple[GeneratorWorker, ...] = ()  # remote workers (bench worker); empty: a local generator
    scheduling: str | None = None  # a local generator's scheduling class: real-time where permitted


class Parity(Record):
    ok: bool | None = None  # None: never checked (the server did not start)
    max_abs_diff: float | None = None


class Fairness(Record):
    """What each server was given: CPUs, threads, the runtime's knob values and the target's own facts
    (limits, image, network, deployment mode...)."""

    server_cpus: tuple[int, ...] = ()
    generator_cpus: tuple[int, ...] = ()
    cpu_shared: bool | None = None
    threads_env: int | None = None
    settings: dict[str, Scalar] = Field(default_factory=dict)  # the runtime's knobs (runtime.yaml)
    target: dict[str, Scalar] = Field(default_factory=dict)  # what the target recorded about the deployment


class Validity(Record):
    valid: bool = False
    reasons: tuple[str, ...] = ()
    error: str | None = None  # what stopped the measurement, when something did
    warnings: tuple[str, ...] = ()  # caveats that do not invalidate the cell


class Second(Record):
    """One second of scheduled time (negative: warm-up) with the server's usage in it."""

    t: int
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    within_slo: int | None = None
    served: int | None = None  # successful responses that arrived in this second (None: an older file)
    server_cpu_percent: float | None = None
    server_rss_mb: float | None = None


class Measured(Record):
    """Who was measured at what: with the label, the key cells are matched by across runs."""

    runtime: str
    model: str
    scenario: str
    target: str
    batch_size: int = 1


class Cell(Measured):
    """One runtime x model x load point: everything measured and why it can or cannot be trusted."""

    cell_id: str
    label: str
    config: dict[str, Scalar] = Field(default_factory=dict)  # the runtime's knob values (runtime.yaml knobs)
    round: int | None = None  # bench run --rounds: which interleaved round measured it
    load: LoadPoint = LoadPoint()
    slo: Slo | None = None
    parity: Parity = Parity()
    counts: Counts = Counts()
    rates: Rates = Rates()
    latency: Latency = Latency()  # every scheduled request (latency_includes says, for older files)
    latency_includes: LatencyPolicy = "all scheduled"
    latency_ok: Latency = Latency()  # successful requests only
    latency_ci: LatencyIntervals = LatencyIntervals()
    service: Latency = Latency()  # from the actual send time
    lateness: Latency = Latency()  # how late the generator sent requests after their scheduled time
    slo_met: bool | None = None
    measured_s: float | None = None
    server: ServerUsage = ServerUsage()
    generator: GeneratorUsage | None = None
    fairness: Fairness = Fairness()
    timeseries: tuple[Second, ...] = ()
    validity: Validity = Validity()
    samples_file: str | None = None
    server_profile: ServerProfile | None = None  # bench run --sample-server: where the server's time went
    model_cost: ModelCost | None = None  # the model's own predict, timed without a server
    server_metrics: ServerMetrics | None = None  # the runtime's Prometheus request duration over the window

    @property
    def status(self) -> CellStatus:
        """valid, invalid (measured, but a reason says it cannot be trusted) or failed (no measurement)."""
        if self.validity.valid:
            return "valid"
        return "failed" if self.validity.error or not self.counts.requests else "invalid"

    @property
    def reasons(self) -> list[str]:
        """The error first (it says most), then every reason it does not already contain."""
        error = self.validity.error
        if error is None:
            return list(self.validity.reasons)
        return [error] + [reason for reason in self.validity.reasons if reason not in error]


class Environment(Record):
    """What a comparison between two runs must know: machine, software, revision (None: not recorded)."""

    host: str | None = None
    cpu_model: str | None = None
    cores: int | None = None
    usable_cpus: tuple[int, ...] | None = None
    memory_gb: float | None = None
    kernel: str | None = None
    python: str | None = None
    packages: dict[str, str | None] = Field(default_factory=dict)
    runtime_packages: dict[str, dict[str, str]] = Field(default_factory=dict)
    git_sha: str | None = None


class Provisioning(Record):
    """What a target prepared for a runtime: a virtualenv or an image, its size and its cost."""

    kind: Literal["virtualenv", "image", "external"]
    identity: str  # the environment's content key, the image tag, or an external endpoint's URL
    packages: int | None = None
    size_mb: float | None = None
    build_s: float | None = None
    built_now: bool | None = None
    facts: dict[str, Scalar] = Field(default_factory=dict)  # base image, offline build, cluster...


class ServingCode(Record):
    """The files a team writes to serve a model with this runtime, counted when the run was made."""

    files: tuple[str, ...] = ()
    lines: int | None = None  # non-blank, non-comment lines; None when a file could not be read


class RuntimeRecord(Record):
    """A runtime as the run found it: what the report's comparison table shows."""

    protocol: str | None = None
    description: str = ""
    settings: dict[str, Scalar] = Field(default_factory=dict)
    folder: str | None = None
    serving_code: ServingCode | None = None
    provisioning: Provisioning | None = None


RunStatus = Literal["running", "complete", "interrupted", "failed", "unknown"]


class RunFairness(Record):
    server_cpus: tuple[int, ...] = ()
    generator_cpus: tuple[int, ...] = ()
    cpu_shared: bool | None = None


class RunResults(Record):
    """A whole run: its environment, the definitions it ran, and every cell in the order measured."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created: str | None = None
    finished: str | None = None
    status: RunStatus = "unknown"
    environment: Environment = Environment()
    scenario: Scenario | None = None
    profile: RunLength | None = None  # the run length (--length), under its name before it was renamed
    target: str | None = None
    fairness: RunFairness = RunFairness()
    price_per_core_hour: float | None = None  # --price-per-core-hour: what a server core costs, for cost figures
    runtimes: dict[str, RuntimeRecord] = Field(default_factory=dict)
    models: dict[str, ModelRecord] = Field(default_factory=dict)
    unsupported: tuple[UnsupportedPair, ...] = ()
    cells: tuple[Cell, ...] = ()
    sweeps: tuple[Sweep, ...] = ()
    capacity: tuple[CapacityRecord, ...] = ()
    tuning: tuple[TuningRecord, ...] = ()
    rounds: tuple[RoundsRecord, ...] = ()

    def runtime(self, name: str) -> RuntimeRecord:
        return self.runtimes.get(name) or RuntimeRecord()
