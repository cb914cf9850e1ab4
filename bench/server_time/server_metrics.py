"""The server's own clock: its Prometheus request-duration series scraped once a second during a cell.

A runtime that publishes Prometheus metrics says where and which series in runtime.yaml (`metrics:`); the
url target takes `--metrics-url`. Each second the page is read (a short timeout: the load driver's loop
waits for it) and the series' running totals kept; the cell gets the difference across its measured window:
how many requests the server counted, their mean duration on its clock and, from a histogram's buckets,
p50 and p99 (interpolated within a bucket, so only as fine as the buckets). Beside the client's figures,
the difference is what the server's clock does not see: the network, the HTTP stack before the runtime's
middleware starts its timer, queueing in front of it.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace

import requests

from bench.redact import redact_uri
from bench.results.profiles import MetricsSecond, ServerMetrics
from bench.runtime_options import MetricsSpec
from bench.server_time.prometheus import Page, parse

SCRAPE_TIMEOUT_S = 0.5
UNIT_MS = {"s": 1000.0, "ms": 1.0, "us": 0.001}
DURATION_WORDS = ("duration", "latency", "seconds")
REQUEST_WORDS = ("request", "infer", "predict")


@dataclass(frozen=True)
class Reading:
    """The series' running totals at one moment (seconds since the epoch)."""

    at: float
    count: float
    total: float  # in the series' unit
    buckets: tuple[tuple[float, float], ...] = ()
    queue: float | None = None  # total time queued inside the server, in the series' unit, when declared


def detect_series(page: Page) -> str | None:
    """For a page nobody described (the url target): the first histogram or summary that reads as a request
    duration, e.g. request_predict_seconds or rest_server_request_duration_seconds."""
    for family, kind in page.types.items():
        lowered = family.lower()
        if kind in ("histogram", "summary") and any(word in lowered for word in DURATION_WORDS) \
                and any(word in lowered for word in REQUEST_WORDS):
            return family
    return None


def read_series(page: Page, spec: MetricsSpec, series: str) -> Reading | None:
    """The totals of one series on a page: a histogram's or summary's _count and _sum, or a counter of total
    time with the counter of requests the spec names."""
    if spec.count is not None:
        count, total = page.total(spec.count, spec.labels), page.total(series, spec.labels)
    else:
        count, total = page.total(f"{series}_count", spec.labels), page.total(f"{series}_sum", spec.labels)
    if count is None or total is None:
        return None
    queue = None
    if spec.queue is not None:
        queue = page.total(spec.queue if spec.count is not None else f"{spec.queue}_sum", spec.labels)
    return Reading(time.time(), count, total, tuple(page.buckets(series, spec.labels)), queue)


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: the bucket holding rank q * count, interpolated linearly in it."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all that is known
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def _difference(end: Reading, start: Reading) -> list[tuple[float, float]]:
    before = dict(start.buckets)
    return [(bound, count - before.get(bound, 0.0)) for bound, count in end.buckets]


@dataclass
class MetricsScraper:
    """Called once a second by the load driver; `summary` gives the cell's figures for its window."""

    url: str = field(repr=False)  # may carry a user:password: `shown` is what is recorded
    spec: MetricsSpec
    readings: list[Reading] = field(default_factory=list)
    series: str | None = None
    problem: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def shown(self) -> str:
        """The page's URL as recorded and printed: a user:password or token in it masked."""
        return redact_uri(self.url)

    def __call__(self) -> None:
        try:
            response = self.session.get(self.url, timeout=SCRAPE_TIMEOUT_S)
            response.raise_for_status()
        except requests.RequestException as exc:
            self.problem = f"{self.shown}: {type(exc).__name__}"
            return
        page = parse(response.text)
        self.series = self.series or self.spec.duration or detect_series(page)
        if self.series is None:
            self.problem = f"{self.shown}: no request-duration histogram or summary on the page"
            return
        reading = read_series(page, self.spec, self.series)
        if reading is None:
            self.problem = f"{self.shown}: no series {self.series} with labels {self.spec.labels or '(any)'}"
            return
        self.readings.append(reading)

    def summary(self, window_start: float, window_end: float) -> ServerMetrics:
        """The window's figures: the running totals at its start and end, each interpolated between the two
        readings around it (readings are a second apart: taking the nearest would count up to a second of
        warm-up traffic), and one row per second between readings inside it."""
        scale = UNIT_MS[self.spec.unit]
        if len(self.readings) < 2 or self.readings[0].at > window_start + 1.0 or self.readings[-1].at < window_end:
            return ServerMetrics(url=self.shown, series=self.series or self.spec.duration, scrapes=len(self.readings),
                                 error=self.problem or "too few readings to cover the measured window")
        start, end = _at(self.readings, window_start), _at(self.readings, window_end)
        requests_counted = end.count - start.count
        mean = (end.total - start.total) * scale / requests_counted if requests_counted > 0 else None
        buckets = _difference(end, start)
        p50, p99 = (bucket_quantile(buckets, q) for q in (0.5, 0.99))
        queued = (end.queue - start.queue) * scale / requests_counted \
            if requests_counted > 0 and end.queue is not None and start.queue is not None else None
        inside = [start, *(r for r in self.readings if window_start < r.at < window_end), end]
        seconds = []
        for earlier, later in itertools.pairwise(inside):
            counted = later.count - earlier.count
            seconds.append(MetricsSecond(
                t=max(0, math.ceil(later.at - window_start) - 1), requests=counted,
                mean_ms=(later.total - earlier.total) * scale / counted if counted > 0 else None))
        return ServerMetrics(
            url=self.shown, series=self.series or self.spec.duration, scrapes=len(self.readings),
            requests=requests_counted, mean_ms=mean,
            p50_ms=p50 * scale if p50 is not None else None, p99_ms=p99 * scale if p99 is not None else None,
            per_second=tuple(seconds), error=None, queue_series=self.spec.queue, queue_mean_ms=queued)


def _at(readings: list[Reading], moment: float) -> Reading:
    """The running totals at a moment, interpolated linearly between the readings around it (held at the
    first or last reading outside them)."""
    if moment <= readings[0].at:
        return replace(readings[0], at=moment)
    for earlier, later in itertools.pairwise(readings):
        if earlier.at <= moment <= later.at:
            part = (moment - earlier.at) / (later.at - earlier.at) if later.at > earlier.at else 1.0
            bounds = dict(earlier.buckets)
            buckets = tuple((bound, bounds.get(bound, 0.0) + part * (count - bounds.get(bound, 0.0)))
                            for bound, count in later.buckets)
            queue = earlier.queue + part * (later.queue - earlier.queue) \
                if earlier.queue is not None and later.queue is not None else None
            return Reading(moment, earlier.count + part * (later.count - earlier.count),
                           earlier.total + part * (later.total - earlier.total), buckets, queue)
    return replace(readings[-1], at=moment)
