"""A remote worker's clock against the master's, measured over Locust's own messages (as NTP does it).

Schedules are in the master's clock: the master sends the start time, and each worker converts it to its
own clock with the offset it measured, so hosts need not agree on the time. The worker sends pings; the
master answers each with its clock; the exchange with the lowest round trip gives the offset, within
half that round trip. The worker measures again when its share is served: the change is the drift. A
cell whose error bound (half the best round trip plus the drift) exceeds MAX_CLOCK_ERROR_MS is invalid:
its workers' schedules may not have interleaved as planned, nor its window held the same requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_CLOCK_ERROR_MS = 5.0  # the stated skew: beyond it a cell's schedule cannot be trusted
PINGS = 8  # exchanges per measurement
PING_GAP_S = 0.02  # between exchanges: a burst would queue behind itself


@dataclass(frozen=True)
class Exchange:
    """One ping: when it left and came back (worker clock) and what the master's clock said."""

    sent: float
    master: float
    received: float

    @property
    def rtt_s(self) -> float:
        return self.received - self.sent

    @property
    def offset_s(self) -> float:
        """The master's clock minus the worker's, assuming the answer was read halfway."""
        return self.master - (self.sent + self.received) / 2.0


def best(exchanges: Sequence[Exchange]) -> Exchange:
    """The exchange least disturbed by queueing: the lowest round trip."""
    if not exchanges:
        raise ValueError("no clock exchange came back")
    return min(exchanges, key=lambda exchange: exchange.rtt_s)


@dataclass(frozen=True)
class ClockReading:
    """A worker's clock as recorded for the cell: offset at the start, its uncertainty and the drift."""

    offset_ms: float
    rtt_ms: float
    drift_ms: float | None = None  # the offset at the end minus at the start; None: not measured again

    @property
    def error_ms(self) -> float:
        return self.rtt_ms / 2.0 + abs(self.drift_ms or 0.0)

    @classmethod
    def of(cls, start: Sequence[Exchange], end: Sequence[Exchange] = ()) -> ClockReading:
        first = best(start)
        drift = (best(end).offset_s - first.offset_s) * 1000.0 if end else None
        return cls(first.offset_s * 1000.0, first.rtt_s * 1000.0, drift)


def clock_reasons(host: str, reading: ClockReading) -> list[str]:
    """Why a cell cannot be trusted because of this worker's clock (empty when it can)."""
    if reading.error_ms <= MAX_CLOCK_ERROR_MS:
        return []
    return [f"worker {host}: clock known only within {reading.error_ms:.1f} ms of the master's (half the best "
            f"round trip {reading.rtt_ms / 2:.1f} ms, drift {abs(reading.drift_ms or 0.0):.1f} ms), over the "
            f"{MAX_CLOCK_ERROR_MS:g} ms allowed"]
