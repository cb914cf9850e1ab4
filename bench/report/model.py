"""Saved run folders as pandas tables: one row per cell, one per second of traffic, raw samples on demand.

The report never talks to a server: everything it shows comes from results.json (read through
bench.results, so every schema version arrives in the current typed shape) and samples/*.parquet.
Column names are the cell's attribute paths (server_rss_mb_max is cell.server.rss_mb_max), so a figure
has one name in the results, the report and MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.order_statistics import SortedRuns, scratch_folder
from bench.report.format import DASH
from bench.results.schema import Cell, RunResults, RuntimeRecord
from bench.results.store import cell_samples, load_results

Part = TypeVar("Part")
Row = dict[str, Any]  # a DataFrame row, as pandas hands it out: the report's boundary with pandas
LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
CELL_COLUMNS = [
    "run_id", "run_index", "position", "cell_id", "series", "runtime", "model", "scenario", "label", "target",
    "batch_size", "loop", "arrival", "users", "offered_rps", "achieved_rps", "throughput_rps", "goodput_rps",
    "rows_per_s", "requests", "errors", "error_rate", "sent", "failed", "dropped", "queued", "latency_includes",
    "p99_ok_ms", "late_p50_ms", "late_p99_ms",
    *[f"{key}_ms" for key in LATENCY_KEYS],
    "p50_ci_low", "p50_ci_high", "p99_ci_low", "p99_ci_high",
    "server_cpu_percent_mean", "server_cpu_percent_max", "server_rss_mb_max", "server_startup_s",
    "server_cpu_s_per_1000", "generator_cpu_percent_max", "parity_ok", "parity_max_abs_diff", "slo_percentile",
    "slo_ms", "slo_met",
    "valid", "status", "invalid_reasons", "error", "samples_file", "measured_s", "warmup_s", "duration_s",
    "profile_model_share", "model_predict_ms",
]
SERIES_COLUMNS = ["run_id", "cell_id", "series", "runtime", "model", "label", "t", "coverage", "requests", "errors",
                  "ok_rps", "offered_rps", "served_rps", "p50_ms", "p99_ms", "server_cpu_percent", "server_rss_mb"]


@dataclass(frozen=True)
class Run:
    """One run folder and its typed results."""

    folder: Path
    results: RunResults
    run_id: str
    index: int

    def runtime_info(self, name: str) -> RuntimeRecord:
        """What the run recorded about one runtime (protocol, settings, code, environment)."""
        return self.results.runtime(name)

    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.results.cells

    @property
    def status(self) -> str:
        return self.results.status

    @property
    def scenario_name(self) -> str:
        return self.results.scenario.name if self.results.scenario else DASH

    @property
    def length_name(self) -> str:
        """The run length (--length), which results.json keeps as `profile`."""
        return self.results.profile.name if self.results.profile else DASH

    @property
    def target(self) -> str:
        return self.results.target or DASH


@dataclass
class ReportData:
    """Every run of a report and its cells and per-second series as DataFrames."""

    runs: list[Run]
    cells: pd.DataFrame
    timeseries: pd.DataFrame
    _samples: dict[tuple[str, str], pd.DataFrame | None] = field(default_factory=dict, repr=False)

    @property
    def overlay(self) -> bool:
        return len(self.runs) > 1

    @property
    def models(self) -> list[str]:
        return sorted(str(m) for m in self.cells["model"].dropna().unique())

    @property
    def runtimes(self) -> list[str]:
        return sorted(str(r) for r in self.cells["runtime"].dropna().unique())

    def run(self, run_id: str) -> Run:
        return next(run for run in self.runs if run.run_id == run_id)

    def cells_with(self, part: Callable[[Cell], Part | None]) -> Iterator[tuple[Run, Cell, Part]]:
        """Every cell that recorded the part a per-cell table shows (its server metrics, profile, generator),
        with its run and the part, in the order they were measured."""
        for run in self.runs:
            for cell in run.cells:
                if (value := part(cell)) is not None:
                    yield run, cell, value

    def samples(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Raw measured samples of the given cells (every scheduled request, or the successful ones for a
        cell from before schema 5, as its figures were), labelled with run, cell and series.

        Loaded lazily and cached: only the figures that need raw samples pay for reading them."""
        frames = []
        for row in records(cells):
            key = (str(row["run_id"]), str(row["cell_id"]))
            if key not in self._samples:
                self._samples[key] = _measured_samples(self.run(key[0]), as_int(row["position"]))
            frame = self._samples[key]
            if frame is not None and not frame.empty:
                frames.append(frame.assign(run_id=key[0], cell_id=key[1], series=str(row["series"]),
                                           runtime=str(row["runtime"])))
        if not frames:
            return pd.DataFrame(columns=["run_id", "cell_id", "series", "runtime", "latency_ms"])
        return pd.concat(frames, ignore_index=True)


def cell_label(cell: Cell) -> str:
    """A cell's load label as a per-cell table shows it: with its round, where the run measured in rounds."""
    return f"{cell.label}, round {cell.round}" if cell.round else cell.label


def as_float(value: object) -> float | None:
    """A DataFrame value as a float, None for missing (NaN, None, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def as_int(value: object, default: int = 0) -> int:
    number = as_float(value)
    return default if number is None else int(number)


def records(frame: pd.DataFrame) -> list[Row]:
    """Rows as plain dicts: typed access for the report code (itertuples' attributes are untyped)."""
    return [{str(key): value for key, value in row.items()} for row in frame.to_dict("records")]


def _cell_row(run: Run, position: int, cell: Cell) -> Row:
    throughput = cell.rates.throughput_rps
    ci = cell.latency_ci
    row: Row = {
        "run_id": run.run_id, "run_index": run.index, "position": position, "cell_id": cell.cell_id,
        "runtime": cell.runtime, "model": cell.model, "scenario": cell.scenario, "label": cell.label,
        "target": cell.target, "batch_size": cell.batch_size, "loop": cell.load.loop, "arrival": cell.load.arrival,
        "users": cell.load.users, "offered_rps": cell.load.offered_rps, "achieved_rps": cell.rates.achieved_rps,
        "throughput_rps": throughput, "goodput_rps": cell.rates.goodput_rps, "rows_per_s": throughput * cell.batch_size,
        "requests": cell.counts.requests, "errors": cell.counts.errors, "error_rate": cell.counts.error_rate,
        "sent": cell.counts.sent, "failed": cell.counts.failed, "dropped": cell.counts.dropped,
        "queued": cell.counts.queued, "latency_includes": cell.latency_includes, "p99_ok_ms": cell.latency_ok.p99,
        "late_p50_ms": cell.lateness.p50, "late_p99_ms": cell.lateness.p99,
        "p50_ci_low": ci.p50.low if ci.p50 else None, "p50_ci_high": ci.p50.high if ci.p50 else None,
        "p99_ci_low": ci.p99.low if ci.p99 else None, "p99_ci_high": ci.p99.high if ci.p99 else None,
        "server_cpu_percent_mean": cell.server.cpu_percent_mean, "server_cpu_percent_max": cell.server.cpu_percent_max,
        "server_rss_mb_max": cell.server.rss_mb_max, "server_startup_s": cell.server.startup_s,
        "server_cpu_s_per_1000": cell.server.cpu_s_per_1000,
        "generator_cpu_percent_max": cell.generator.cpu_percent_max if cell.generator else None,
        "parity_ok": cell.parity.ok, "parity_max_abs_diff": cell.parity.max_abs_diff,
        "slo_percentile": cell.slo.percentile if cell.slo else None, "slo_ms": cell.slo.ms if cell.slo else None,
        "slo_met": cell.slo_met, "valid": cell.validity.valid, "status": cell.status, "invalid_reasons": cell.reasons,
        "error": cell.validity.error, "samples_file": cell.samples_file, "measured_s": cell.measured_s,
        "warmup_s": cell.load.warmup_s, "duration_s": cell.load.duration_s,
        "profile_model_share": shares.model if (shares := cell.server_profile and cell.server_profile.shares) else None,
        "model_predict_ms": cell.model_cost.predict_ms_p50 if cell.model_cost else None,
    }
    for key in LATENCY_KEYS:
        row[f"{key}_ms"] = getattr(cell.latency, key)
    return row


def _coverage(second: int, warmup_s: float | None, duration_s: float | None) -> float:
    """How much of the second [t, t+1) lies inside the scheduled traffic [-warmup, duration).

    The first and last seconds are usually partial (a 2.5 s warm-up starts half-way through second -3):
    dividing by the coverage keeps them from showing as false dips in the rate."""
    if warmup_s is None or duration_s is None:
        return 1.0
    return max(0.0, min(second + 1.0, duration_s) - max(float(second), -warmup_s))


def _series_rows(row: Row, cell: Cell) -> list[Row]:
    rows = []
    for point in cell.timeseries:
        coverage = _coverage(point.t, row["warmup_s"], row["duration_s"])
        rows.append({
            "run_id": row["run_id"], "cell_id": row["cell_id"], "runtime": row["runtime"], "model": row["model"],
            "label": row["label"], "t": point.t, "coverage": coverage, "requests": float(point.requests),
            "errors": float(point.errors),
            "ok_rps": (point.requests - point.errors) / coverage if coverage > 0 else None, "p50_ms": point.p50_ms,
            "offered_rps": point.requests / coverage if coverage > 0 else None,
            "served_rps": point.served / coverage if coverage > 0 and point.served is not None else None,
            "p99_ms": point.p99_ms, "server_cpu_percent": point.server_cpu_percent,
            "server_rss_mb": point.server_rss_mb,
        })
    return rows


FIGURE_SAMPLES = 100_000  # latencies per cell the figures draw from, at most


def _measured_samples(run: Run, position: int) -> pd.DataFrame | None:
    """The latencies of the cell's figures, inside the measurement window (older files without in_window:
    all of them), sorted. A cell with more than FIGURE_SAMPLES of them is thinned to its exact order
    statistics at FIGURE_SAMPLES evenly spaced ranks (minimum and maximum kept): the curves move by less
    than one rank step, and a cell of any length is read in bounded memory."""
    cell = run.cells[position]
    try:
        source = cell_samples(run.folder, cell)
        if source is None or "latency_ms" not in source.columns:
            return None
        with SortedRuns(scratch_folder()) as latencies:
            for batch in source.batches(["latency_ms", "status", "in_window"]):
                if "in_window" in batch:
                    batch = batch.loc[batch["in_window"].astype(bool)]
                if "status" in batch and cell.latency_includes == "successful":  # the policy of the cell's figures
                    batch = batch.loc[(batch["status"] >= 200) & (batch["status"] < 300)]
                latencies.add(batch["latency_ms"].to_numpy(dtype=np.float64))
            count = latencies.count
            ranks = np.unique(np.rint(np.linspace(0, count - 1, min(count, FIGURE_SAMPLES))).astype(np.int64))
            values = latencies.select(ranks) if count else np.empty(0)
    except (OSError, ValueError):
        return None  # a missing or unreadable Parquet file: the figures say there are no samples
    return pd.DataFrame({"latency_ms": values})


def _unique_run_ids(loaded: list[tuple[Path, RunResults]]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for _, results in loaded:
        seen[results.run_id] = seen.get(results.run_id, 0) + 1
        count = seen[results.run_id]
        ids.append(results.run_id if count == 1 else f"{results.run_id}#{count}")
    return ids


def load_runs(run_dirs: Sequence[Path]) -> ReportData:
    """Load one or several run folders (or results.json files) into a ReportData."""
    if not run_dirs:
        raise BenchError("no run folder given", hint="pass a run folder under reports/")
    loaded = []
    for given in run_dirs:
        path = Path(given)
        loaded.append((path if path.is_dir() else path.parent, load_results(path)))
    runs = [Run(folder.resolve(), results, run_id, index)
            for index, ((folder, results), run_id) in enumerate(zip(loaded, _unique_run_ids(loaded), strict=True))]
    rows: list[Row] = []
    series_rows: list[Row] = []
    for run in runs:
        for position, cell in enumerate(run.cells):
            row = _cell_row(run, position, cell)
            rows.append(row)
            series_rows.extend(_series_rows(row, cell))
    cells = pd.DataFrame(rows, columns=CELL_COLUMNS)
    overlay = len(runs) > 1
    cells["series"] = [f"{r} · {i}" if overlay else r for r, i in zip(cells["runtime"], cells["run_id"], strict=True)]
    timeseries = pd.DataFrame(series_rows, columns=[c for c in SERIES_COLUMNS if c != "series"])
    timeseries = timeseries.merge(cells[["run_id", "cell_id", "series"]], on=["run_id", "cell_id"], how="left")
    return ReportData(runs=runs, cells=cells, timeseries=timeseries[SERIES_COLUMNS])
