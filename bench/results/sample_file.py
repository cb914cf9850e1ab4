"""A cell's raw samples on disk, read in batches so that no reader holds a whole cell.

The generator processes append CSV rows as requests finish; `merge_generator_files` turns them into one
Parquet file ordered by scheduled time with an external merge sort (sorted runs of SORT_RUN_ROWS rows,
then a k-way merge that reads each run BATCH_ROWS / runs rows at a time), written under a temporary name
and renamed. Readers see a `SampleSource`: the Parquet file, or an in-memory frame in tests and short
calibration runs; both hand out batches in scheduled order.
"""

from __future__ import annotations

import io
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

from bench.files import sync_file, sync_folder
from bench.results.samples import BOUNDARY_TOLERANCE_S, REQUIRED_COLUMNS, SAMPLE_COLUMNS

BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 1 << 20  # about 15,000 sample lines
SORT_RUN_ROWS = 65_536  # rows sorted in memory at once while merging: about 5 MB of frame
MIN_MERGE_ROWS = 1_024  # per run and read, however many runs there are
FEW_VALUED = ["status", "bytes", "worker", "queued", "in_window"]
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
        # dictionary encoding for the few-valued columns only: on the float columns it saves nothing and its
        # buffers grew with the file (measured: 480,000 rows +27 MB RSS more than 48,000; without: +9 MB)
        writer = pq.ParquetWriter(partial, _schema(window is not None), use_dictionary=FEW_VALUED)
        try:
            pending: list[pd.DataFrame] = []
            held = 0
            for batch in _merge(runs):  # gathered into whole row groups: merged pieces can be a few rows
                pending.append(batch)
                held += len(batch)
                if held >= BATCH_ROWS:
                    _write(writer, pending)
                    pending, held = [], 0
            _write(writer, pending)
        finally:
            writer.close()
        sync_file(partial)
        os.replace(partial, destination)
        sync_folder(destination.parent)
    return ParquetSamples(destination)


def _write(writer: pq.ParquetWriter, frames: list[pd.DataFrame]) -> None:
    if frames:
        table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), schema=writer.schema, preserve_index=False)
        writer.write_table(table, row_group_size=BATCH_ROWS)


def mark_window(frame: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    start, end = window
    inside = (frame["scheduled"] >= start - BOUNDARY_TOLERANCE_S) & (frame["scheduled"] < end - BOUNDARY_TOLERANCE_S)
    return frame.assign(in_window=inside)


def _schema(with_window: bool) -> pa.Schema:
    fields = [pa.field(name, pa.from_numpy_dtype(np.dtype(kind))) for name, kind in DTYPES.items()]
    return pa.schema(fields + ([pa.field("in_window", pa.bool_())] if with_window else []))


def _csv_chunks(folder: Path, window: tuple[float, float] | None) -> Iterator[pd.DataFrame]:
    """The files' rows in blocks of about CSV_BLOCK_BYTES, each block parsed on its own, so reading holds
    one block whatever the file's size (pandas' chunked reader and pyarrow's streaming one both grew with
    the file: +26 and +75 MB at 480,000 rows against +14 and +35 at 48,000). A line torn by a kill has too
    few fields or an empty required one: skipped, never read with a truncated status."""
    for path in sorted(folder.glob("samples-*.csv")):
        for block in _line_blocks(path):
            frame = pd.read_csv(io.BytesIO(block), names=SAMPLE_COLUMNS, header=None, on_bad_lines="skip")
            chunk = frame.dropna(subset=REQUIRED_COLUMNS).astype(DTYPES)
            if len(chunk):
                yield chunk if window is None else mark_window(chunk, window)


def _line_blocks(path: Path) -> Iterator[bytes]:
    """Whole lines, CSV_BLOCK_BYTES at a time (the last, maybe torn, line of the file included)."""
    carried = b""
    with path.open("rb") as source:
        while block := source.read(CSV_BLOCK_BYTES):
            block = carried + block
            end = block.rfind(b"\n") + 1
            carried = block[end:]
            if end:
                yield block[:end]
    if carried.strip():
        yield carried


class _Run:
    """One sorted run on disk: a raw file per column, so that the merge reads exactly the rows it asks for
    (a Parquet reader decodes a whole row group per run, and memory would grow with the number of runs)."""

    def __init__(self, folder: Path, frame: pd.DataFrame) -> None:
        folder.mkdir()
        self.folder = folder
        self.dtypes = {name: frame[name].to_numpy().dtype for name in frame.columns}
        for name in frame.columns:
            np.ascontiguousarray(frame[name].to_numpy()).tofile(folder / name)
        self.rows = len(frame)
        self.read_upto = 0

    def next_rows(self, count: int) -> pd.DataFrame | None:
        """The next `count` rows (fewer at the end), or None when the run is used up."""
        if self.read_upto >= self.rows:
            return None
        count = min(count, self.rows - self.read_upto)
        columns = {}
        for name, dtype in self.dtypes.items():
            with (self.folder / name).open("rb") as source:
                source.seek(self.read_upto * dtype.itemsize)
                columns[name] = np.fromfile(source, dtype=dtype, count=count)
        self.read_upto += count
        return pd.DataFrame(columns)


def _sorted_runs(chunks: Iterator[pd.DataFrame], scratch: Path) -> list[_Run]:
    """Chunks gathered into runs of SORT_RUN_ROWS rows, each sorted and written to scratch."""
    runs: list[_Run] = []
    pending: list[pd.DataFrame] = []
    held = 0

    def flush() -> None:
        nonlocal pending, held
        if pending:
            run = pd.concat(pending, ignore_index=True).sort_values("scheduled", kind="stable")
            runs.append(_Run(scratch / f"run-{len(runs)}", run))
        pending, held = [], 0

    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= SORT_RUN_ROWS:
            flush()
    flush()
    return runs


def _merge(runs: list[_Run]) -> Iterator[pd.DataFrame]:
    """K-way merge of sorted runs: emit every buffered row up to the smallest buffered maximum, refill.
    Each run is read SORT_RUN_ROWS / runs rows at a time, so the buffers hold one run's worth in all."""
    if not runs:
        return
    per_run = max(MIN_MERGE_ROWS, SORT_RUN_ROWS // len(runs))
    buffers: list[pd.DataFrame | None] = [run.next_rows(per_run) for run in runs]
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
            buffers[index] = rest if len(rest) else runs[index].next_rows(per_run)
        merged = pd.concat(parts, ignore_index=True)
        yield merged.sort_values("scheduled", kind="stable") if len(parts) > 1 else merged
