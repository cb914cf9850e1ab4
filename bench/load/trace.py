"""Recorded arrivals: a file of request times (or of the gaps between them) to replay open loop.

A CSV file with a header, or JSON lines, holds one request per row in one of these columns, whose name says
the unit: `timestamp` (seconds), `timestamp_ms`, `timestamp_us` (absolute or relative times, in order), or
`interval`, `interval_ms`, `interval_us` (the gap before each request, as perf_analyzer's request-intervals
file). Other columns are ignored, so a production access log with a time column replays as it is.

A trace is replayed from its first request, at a time scale (2: twice as fast as recorded) and looped: the
loop's period is the trace's span plus its mean gap, so its end does not meet its start in one burst.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

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


def _column_of(names: list[str], path: Path) -> str:
    named = [name for name in names if name.strip().lower() in COLUMNS]
    if len(named) != 1:
        found = ", ".join(names[:6])
        raise BenchError(f"{path}: {'no' if not named else 'more than one'} arrival column (columns: {found})",
                         hint=HINT)
    return named[0]


def _number(value: object, row: int, column: str, path: Path) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise BenchError(f"{path}: row {row} of column {column} is not a number", hint=HINT)
    return number


def _values(text: str, path: Path) -> tuple[str, list[float]]:
    """The arrival column's name (lower case) and its values, row by row (the standard library's readers: the
    load generator's image has no pandas)."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise BenchError(f"{path}: line {error.lineno} is not JSON ({error.msg})", hint=HINT) from None
        if not rows or not all(isinstance(row, dict) for row in rows):
            raise BenchError(f"{path}: not one JSON object per line", hint=HINT)
        column = _column_of([str(key) for key in rows[0]], path)
        return column.strip().lower(), [_number(row.get(column), i, column, path) for i, row in enumerate(rows, 1)]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    column = _column_of(header, path)
    at = header.index(column)
    values = [_number(row[at] if at < len(row) else None, i, column, path)
              for i, row in enumerate(reader, 1) if row]
    return column.strip().lower(), values


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
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not a text file", hint=HINT) from None
    column, listed = _values(text, path)
    values = np.array(listed, dtype=np.float64)
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
