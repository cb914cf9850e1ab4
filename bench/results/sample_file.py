"""A cell's raw samples on disk, read in batches so that no reader holds a whole cell.

The generator processes append CSV rows as requests finish; `merge_generator_files` turns them into one
Parquet file ordered by scheduled time with an external merge sort (sorted runs of SORT_RUN_ROWS rows,
then a k-way merge that reads each run BATCH_ROWS / runs rows at a time), written under a temporary name
and renamed. Readers see a `SampleSource`: the Parquet file, or an in-memory frame in tests and short
calibration runs; both hand out batches in scheduled order.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.results.samples import BOUNDARY_TOLERANCE_S, REQUIRED_COLUMNS, SAMPLE_COLUMNS

BATCH_ROWS = 65_536
SORT_RUN_ROWS = 262_144  # rows sorted in memory at once while merging: about 30 MB of frame
MIN_MERGE_ROWS = 1_024  # per run and read, however many runs there are
DTYPES = {"scheduled": "float64", "sent": "float64", "latency_ms": "float64", "service_ms": "float64",
          "status": "int32", "bytes": "int64", "worker": "int16", "queued": "int8"}


class SampleSource(Protocol):
    """Raw samples, handed out in batches ordered by scheduled time."""

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]: ...

    @property
    def columns(self) -> list[str]: ...

    def whole(self) -> pd.DataFrame: ...


@dataclass(frozen=True)
class ParquetSamples:
    path: Path

    @property
    def columns(self) -> list[str]:
        return list(pq.ParquetFile(self.path).schema_arrow.names)

    @property
    def rows(self) -> int:
        return int(pq.ParquetFile(self.path).metadata.num_rows)

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        present = self.columns
        wanted = present if columns is None else [name for name in columns if name in present]
        source = pq.ParquetFile(self.path)
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            yield batch.to_pandas()

    def whole(self) -> pd.DataFrame:
        """The whole file at once: only for runs known to be short (calibration, the generator's ceiling)."""
        return pd.read_parquet(self.path)


@dataclass(frozen=True)
class FrameSamples:
    frame: pd.DataFrame

    @classmethod
    def of(cls, frame: pd.DataFrame) -> FrameSamples:
        ordered = frame.sort_values("scheduled", kind="stable") if "scheduled" in frame else frame
        return cls(ordered.reset_index(drop=True))

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def whole(self) -> pd.DataFrame:
        return self.frame

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        wanted = self.columns if columns is None else [name for name in columns if name in self.frame]
        for start in range(0, len(self.frame), BATCH_ROWS):
            yield self.frame.iloc[start : start + BATCH_ROWS][wanted]


def as_source(samples: SampleSource | pd.DataFrame) -> SampleSource:
    return FrameSamples.of(samples) if isinstance(samples, pd.DataFrame) else samples


def merge_generator_files(folder: Path, destination: Path,
                          window: tuple[float, float] | None = None) -> ParquetSamples:
    """Every generator process's CSV rows, as one Parquet file ordered by scheduled time (stable: file
    order breaks ties); with a window, an in_window column marks the requests scheduled inside it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="servebench-sort-", dir=destination.parent) as scratch:
        runs = _sorted_runs(_csv_chunks(folder, window), Path(scratch))
        partial = destination.with_name(f".{destination.name}.partial")
        writer = pq.ParquetWriter(partial, _schema(window is not None))
        try:
            for batch in _merge(runs):
                writer.write_table(pa.Table.from_pandas(batch, schema=writer.schema, preserve_index=False),
                                   row_group_size=BATCH_ROWS)
        finally:
            writer.close()
        os.replace(partial, destination)
    return ParquetSamples(destination)


def mark_window(frame: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    start, end = window
    inside = (frame["scheduled"] >= start - BOUNDARY_TOLERANCE_S) & (frame["scheduled"] < end - BOUNDARY_TOLERANCE_S)
    return frame.assign(in_window=inside)


def _schema(with_window: bool) -> pa.Schema:
    fields = [pa.field(name, pa.from_numpy_dtype(np.dtype(kind))) for name, kind in DTYPES.items()]
    return pa.schema(fields + ([pa.field("in_window", pa.bool_())] if with_window else []))


def _csv_chunks(folder: Path, window: tuple[float, float] | None) -> Iterator[pd.DataFrame]:
    for path in sorted(folder.glob("samples-*.csv")):
        if path.stat().st_size == 0:
            continue
        with pd.read_csv(path, names=SAMPLE_COLUMNS, header=None, on_bad_lines="skip",
                         chunksize=BATCH_ROWS) as reader:
            for chunk in reader:
                chunk = chunk.dropna(subset=REQUIRED_COLUMNS).astype(DTYPES)  # a line torn by a kill
                yield chunk if window is None else mark_window(chunk, window)


def _sorted_runs(chunks: Iterator[pd.DataFrame], scratch: Path) -> list[Path]:
    """Chunks gathered into runs of SORT_RUN_ROWS rows, each sorted and written to scratch."""
    runs: list[Path] = []
    pending: list[pd.DataFrame] = []
    held = 0

    def flush() -> None:
        nonlocal pending, held
        if pending:
            run = pd.concat(pending, ignore_index=True).sort_values("scheduled", kind="stable")
            path = scratch / f"run-{len(runs)}.parquet"
            run.to_parquet(path, index=False, row_group_size=BATCH_ROWS)
            runs.append(path)
        pending, held = [], 0

    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= SORT_RUN_ROWS:
            flush()
    flush()
    return runs


def _merge(runs: list[Path]) -> Iterator[pd.DataFrame]:
    """K-way merge of sorted runs: emit every buffered row up to the smallest buffered maximum, refill."""
    if not runs:
        return
    per_run = max(MIN_MERGE_ROWS, SORT_RUN_ROWS // len(runs))
    readers = [pq.ParquetFile(path).iter_batches(batch_size=per_run) for path in runs]
    buffers: list[pd.DataFrame | None] = [_next(reader) for reader in readers]
    while True:
        live = [(index, buffer) for index, buffer in enumerate(buffers) if buffer is not None]
        if not live:
            return
        bound = min(float(buffer["scheduled"].to_numpy()[-1]) for _, buffer in live)
        parts = []
        for index, buffer in live:
            cut = int(np.searchsorted(buffer["scheduled"].to_numpy(), bound, side="right"))
            parts.append(buffer.iloc[:cut])
            rest = buffer.iloc[cut:]
            buffers[index] = rest if len(rest) else _next(readers[index])
        merged = pd.concat(parts, ignore_index=True)
        yield merged.sort_values("scheduled", kind="stable") if len(parts) > 1 else merged


def _next(reader: Iterator[pa.RecordBatch]) -> pd.DataFrame | None:
    with contextlib.suppress(StopIteration):
        while True:
            batch: pd.DataFrame = next(reader).to_pandas()
            if len(batch):
                return batch
    return None
