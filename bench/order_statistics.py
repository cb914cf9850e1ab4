"""Exact order statistics of more values than should sit in memory: sorted runs on disk, selected by bisection.

Why this rather than DuckDB: DuckDB's external sort holds up to its memory limit (measured: 200 MB RSS for
2.4M rows at memory_limit=256MB) and fails outright below it (64MB: "could not allocate block of size
30.5 MiB"), so a harness using it grows with the run until that limit. Here values are buffered in chunks of
CHUNK_VALUES, each chunk is sorted and written as a run of order-preserving integer keys, and the k-th
smallest of the union is found by bisecting the 64-bit key space: 64 rounds of `searchsorted` per run,
each run memory-mapped only while it is searched. Memory stays at one chunk whatever the number of values;
results are bit-identical to numpy's linear-interpolation percentiles over the same values.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_VALUES = 131_072  # values buffered before a sorted run goes to disk: 1 MiB of keys
KeyArray = np.ndarray[Any, np.dtype[np.uint64]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
_SIGN = np.uint64(1 << 63)


def float_keys(values: FloatArray) -> KeyArray:
    """Unsigned integers that sort as the floats do (negative floats: every bit flipped; others: the sign bit)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    keys: KeyArray = np.where(bits & _SIGN, ~bits, bits | _SIGN)
    return keys


def key_floats(keys: KeyArray) -> FloatArray:
    bits = np.where(keys & _SIGN, keys & ~_SIGN, ~keys)
    floats: FloatArray = bits.astype(np.uint64).view(np.float64)
    return floats


class SortedRuns:
    """A multiset of floats, added in any order, that answers exact order statistics in bounded memory.

    NaNs are not counted (a dropped request has no service time). Use as a context manager: the runs live
    in a temporary folder that is removed on exit.
    """

    def __init__(self, folder: Path | None = None, chunk_values: int = CHUNK_VALUES) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="servebench-runs-", dir=folder)
        self._chunk_values = chunk_values
        self._pending: list[FloatArray] = []
        self._pending_count = 0
        self._runs: list[tuple[Path, int]] = []
        self.count = 0
        self.total = 0.0

    def __enter__(self) -> SortedRuns:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pending = []
        self._folder.cleanup()

    def add(self, values: FloatArray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if len(values) == 0:
            return
        self.count += len(values)
        self.total += float(values.sum(dtype=np.float64))
        self._pending.append(values)
        self._pending_count += len(values)
        if self._pending_count >= self._chunk_values:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_count:
            return
        keys = np.sort(float_keys(np.concatenate(self._pending)))
        path = Path(self._folder.name) / f"run-{len(self._runs)}.u64"
        keys.tofile(path)
        self._runs.append((path, len(keys)))
        self._pending, self._pending_count = [], 0

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def select(self, ranks: Sequence[int] | np.ndarray[Any, Any]) -> FloatArray:
        """The values at these 0-based ranks of the sorted multiset (each rank in [0, count))."""
        wanted = np.asarray(ranks, dtype=np.int64)
        if len(wanted) and (wanted.min() < 0 or wanted.max() >= self.count):
            raise IndexError(f"rank outside 0..{self.count - 1}")
        if not self._runs:  # everything still in memory: sort it there
            keys = np.sort(float_keys(np.concatenate(self._pending))) if self._pending else np.empty(0, np.uint64)
            return key_floats(keys[wanted])
        self._flush()
        return key_floats(self._bisect(wanted))

    def _bisect(self, ranks: np.ndarray[Any, Any]) -> KeyArray:
        """Per rank r, the smallest key K with at least r + 1 keys <= K: that is the key of rank r."""
        low = np.zeros(len(ranks), dtype=np.uint64)
        high = np.full(len(ranks), np.iinfo(np.uint64).max, dtype=np.uint64)
        needed = ranks + 1
        while len(ranks) and bool((low < high).any()):
            middle = low + (high - low) // np.uint64(2)
            at_most = np.zeros(len(ranks), dtype=np.int64)
            for path, length in self._runs:
                run = np.memmap(path, dtype=np.uint64, mode="r", shape=(length,))
                at_most += np.searchsorted(run, middle, side="right")
                del run  # unmapped at once: only the pages bisection touched were ever resident
            enough = at_most >= needed
            high = np.where(enough, middle, high)
            low = np.where(enough, low, middle + np.uint64(1))
        return low

    def percentiles(self, levels: Sequence[float]) -> list[float]:
        """numpy.percentile(values, levels) with its default linear interpolation, to the last bit."""
        if not self.count:
            raise ValueError("no values")
        quantiles = np.true_divide(np.asarray(levels, dtype=np.float64), 100)
        virtual = (self.count - 1) * quantiles  # numpy's virtual index for method='linear'
        previous = np.floor(virtual)
        gamma = virtual - previous
        below = np.clip(previous, 0, self.count - 1).astype(np.int64)
        above = np.clip(previous + 1, 0, self.count - 1).astype(np.int64)
        values = self.select(np.concatenate([below, above]))
        a, b = values[: len(below)], values[len(below):]
        difference = b - a
        result = np.where(gamma >= 0.5, b - difference * (1 - gamma), a + difference * gamma)  # numpy's _lerp
        return [float(value) for value in result]

    def maximum(self) -> float:
        return float(self.select([self.count - 1])[0])


def scratch_folder() -> Path | None:
    """Where runs go: $SERVEBENCH_SCRATCH, else the system's temporary folder."""
    value = os.environ.get("SERVEBENCH_SCRATCH")
    return Path(value) if value else None
