"""Where a cell's server time went (schema 6; whether waits counted, schema 9): the shares of its sampled profile
and the model's own cost; and the server's own clock (schema 8): its request-duration metrics over the window."""

from __future__ import annotations

from bench.results.record import Record


class ProfileShares(Record):
    """Shares of the server's CPU samples by category; they sum to 1 (unclassified included)."""

    model: float = 0.0
    serialisation: float = 0.0
    http: float = 0.0
    framework: float = 0.0
    other: float = 0.0
    unclassified: float = 0.0

    @property
    def serving(self) -> float:
        """Everything that is not the model."""
        return 1.0 - self.model


class ServerProfile(Record):
    """A sampled profile of the server's process tree over the measured window (py-spy), or why there is none."""

    profiler: str = "py-spy"
    rate_hz: int | None = None
    samples: int = 0
    processes: int = 0  # Python processes that were sampled
    shares: ProfileShares | None = None  # None: no samples (see error)
    flamegraph: str | None = None  # an SVG, relative to the run folder
    stacks: str | None = None  # the collapsed stacks it was drawn from, relative to the run folder
    error: str | None = None
    # py-spy could not tell the server's waiting threads from its running ones, so waits count as work: a
    # container sampled from the host (Docker cells before schema 9; since then py-spy runs in its pid namespace)
    waits_counted: bool = False


class ModelCost(Record):
    """The model's own predict timed in-process in the runtime's environment (no server), on the rows the
    generator sends at the cell's batch size."""

    predict_ms_p50: float
    predict_ms_mean: float
    calls: int
    batch_size: int


class MetricsSecond(Record):
    """One second of the server's own metrics: requests it counted and their mean duration on its clock."""

    t: int  # seconds from the window's start, as the client's per-second rows
    requests: float
    mean_ms: float | None


class ServerMetrics(Record):
    """The runtime's Prometheus request-duration series over the measured window (scraped once a second), or
    why there is none. p50 and p99 come from a histogram's buckets (interpolated; None for a summary or a
    counter of total time)."""

    url: str
    series: str
    scrapes: int = 0
    requests: float | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    per_second: tuple[MetricsSecond, ...] = ()
    error: str | None = None
    # the part of mean_ms the requests spent queued inside the server (runtime.yaml metrics: queue), if published
    queue_series: str | None = None
    queue_mean_ms: float | None = None
