"""Recorded arrivals: a file of request times (or of the gaps between them) to replay open loop.

A CSV file with a header, or JSON lines, holds one request per row in one of these columns, whose name says
the unit: `timestamp` (seconds), `timestamp_ms`, `timestamp_us` (absolute or relative times, in order), or
`interval`, `interval_ms`, `interval_us` (the gap before each request, as perf_analyzer's request-intervals
file). Other columns are ignored, so a production access log with a time column replays as it is.

A trace is replayed from its first request, at a time scale (2: twice as fast as recorded) and looped: the
loop's period is the trace's span plus its mean gap, so its end does not meet its start in one burst.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.protocols import Array

# column name -> (times or gaps, seconds per unit)
COLUMNS: dict[str, tuple[str, float]] = {
    "timestamp": ("times", 1.0), "timestamp_s": ("times", 1.0), "timestamp_ms": ("times", 1e-3),
    "timestamp_us": ("times", 1e-6), "interval": ("gaps", 1.0), "interval_s": ("gaps", 1.0),
    "interval_ms": ("gaps", 1e-3), "interval_us": ("gaps", 1e-6),
}
HINT = ("one request per row, in a column named timestamp, timestamp_ms, timestamp_us, interval, interval_ms or "
        "interval_us (CSV with a header, or JSON lines)")


@dataclass(frozen=True, eq=False)
class Trace:
    """A trace's arrivals as offsets from its first request (seconds, ascending, the first 0)."""

    offsets: Array
    sha256: str
    name: str

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def period_s(self) -> float:
        """One loop: the span plus the mean gap."""
        span = float(self.offsets[-1])
        return span * self.count / (self.count - 1)

    @property
    def mean_rps(self) -> float:
        return self.count / self.period_s

    def between(self, start_s: float, end_s: float, chunk: int) -> Iterator[Array]:
        """Offsets of the looped trace in [start_s, end_s), ascending, in chunks of at most `chunk`."""
        period = self.period_s
        loop = int(np.floor(start_s / period))
        while loop * period < end_s:
            base = loop * period
            first = int(np.searchsorted(self.offsets, start_s - base, side="left"))
            last = int(np.searchsorted(self.offsets, end_s - base, side="left"))
            for begin in range(first, last, chunk):
                yield self.offsets[begin:min(last, begin + chunk)] + base
            loop += 1


def _column(frame: pd.DataFrame, path: Path) -> tuple[str, Array]:
    named = [name for name in frame.columns if str(name).strip().lower() in COLUMNS]
    if len(named) != 1:
        found = ", ".join(str(name) for name in frame.columns[:6])
        raise BenchError(f"{path}: {'no' if not named else 'more than one'} arrival column (columns: {found})",
                         hint=HINT)
    values = pd.to_numeric(frame[named[0]], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise BenchError(f"{path}: row {int(bad[0]) + 1} of column {named[0]} is not a number", hint=HINT)
    return str(named[0]).strip().lower(), values


@lru_cache(maxsize=8)
def read_trace(path_text: str) -> Trace:
    """The trace in a file; a BenchError (one line, with a hint) for anything that cannot be replayed."""
    path = Path(path_text)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BenchError(f"cannot read the arrivals file {path}: {error.strerror}",
                         hint="give the path of a CSV or JSON-lines file") from None
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            frame = pd.read_json(path, lines=True)
        else:
            frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as error:
        raise BenchError(f"{path}: not a readable CSV or JSON-lines file ({str(error).splitlines()[0][:120]})",
                         hint=HINT) from None
    column, values = _column(frame, path)
    kind, unit = COLUMNS[column]
    if kind == "gaps":
        negative = np.flatnonzero(values < 0)
        if len(negative):
            raise BenchError(f"{path}: row {int(negative[0]) + 1} has a negative {column}", hint=HINT)
        times = np.cumsum(values * unit)
    else:
        times = values * unit
        backwards = np.flatnonzero(np.diff(times) < 0)
        if len(backwards):
            raise BenchError(f"{path}: row {int(backwards[0]) + 2} is earlier than the row before it",
                             hint="sort the trace by time")
    if len(times) < 2 or times[-1] <= times[0]:
        raise BenchError(f"{path}: a trace needs at least two requests at different times, found {len(times)}",
                         hint=HINT)
    return Trace(offsets=times - times[0], sha256=hashlib.sha256(raw).hexdigest(), name=path.name)
