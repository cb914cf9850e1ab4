"""Saved run folders as pandas tables: one row per cell, one per second of traffic, raw samples on demand.

The report never talks to a server: everything it shows comes from results.json and samples/*.parquet.
Cells are flattened with a fixed column set, so an old schema-1 file (only the DESIGN.md minimum keys),
a failed cell (no samples, no latency) or a key added later all load into the same shape; a missing
value is None/NaN, never a KeyError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.results.store import load_results, load_samples

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
CELL_COLUMNS = [
    "run_id", "run_index", "position", "cell_id", "series", "runtime", "model", "scenario", "label", "target",
    "batch_size", "loop", "arrival", "users", "offered_rps", "achieved_rps", "throughput_rps", "goodput_rps",
    "rows_per_s", "requests", "errors", "error_rate",
    *[f"{key}_ms" for key in LATENCY_KEYS],
    "p50_ci_low", "p50_ci_high", "p99_ci_low", "p99_ci_high",
    "cpu_mean", "cpu_max", "rss_max_mb", "startup_s", "generator_cpu_max",
    "parity_ok", "parity_max_abs_diff", "slo_percentile", "slo_ms", "slo_met",
    "valid", "status", "invalid_reasons", "error", "samples_file", "measured_s", "warmup_s", "duration_s",
]
SERIES_COLUMNS = ["run_id", "cell_id", "series", "runtime", "model", "label", "t", "coverage", "requests", "errors",
                  "ok_rps", "p50_ms", "p99_ms", "server_cpu_percent", "server_rss_mb"]


@dataclass(frozen=True)
class Run:
    """One run folder and its results.json payload."""

    folder: Path
    payload: dict[str, Any]
    run_id: str
    index: int

    @property
    def environment(self) -> dict[str, Any]:
        return _mapping(self.payload.get("environment"))

    @property
    def scenario(self) -> dict[str, Any]:
        return _mapping(self.payload.get("scenario"))

    @property
    def profile(self) -> dict[str, Any]:
        return _mapping(self.payload.get("profile"))

    @property
    def runtimes(self) -> dict[str, Any]:
        return _mapping(self.payload.get("runtimes"))

    def runtime_info(self, name: str) -> dict[str, Any]:
        """What the run recorded about one runtime (protocol, settings, description); {} when nothing."""
        return _mapping(self.runtimes.get(name))

    @property
    def fairness(self) -> dict[str, Any]:
        return _mapping(self.payload.get("fairness"))

    @property
    def cells(self) -> list[dict[str, Any]]:
        cells = self.payload.get("cells")
        return [cell for cell in cells if isinstance(cell, dict)] if isinstance(cells, list) else []

    @property
    def status(self) -> str:
        return str(self.payload.get("status") or "unknown")


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

    def samples(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Raw measured, successful samples of the given cells, labelled with run, cell and series.

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


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _get(data: Any, *path: str) -> Any:
    """A nested value or None, whatever shape the file has."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_float(value: object) -> float | None:
    """A DataFrame value as a float, None for missing (NaN, None, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def as_int(value: object, default: int = 0) -> int:
    number = as_float(value)
    return default if number is None else int(number)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts: typed access for the report code (itertuples' attributes are untyped)."""
    return [{str(key): value for key, value in row.items()} for row in frame.to_dict("records")]


def _ci(cell: dict[str, Any], name: str) -> tuple[float | None, float | None]:
    interval = _get(cell, "latency_ci_ms", name)
    if isinstance(interval, list | tuple) and len(interval) == 2:
        return _number(interval[0]), _number(interval[1])
    return None, None


def _label(cell: dict[str, Any]) -> str:
    """Schema-1 files may lack a label: derive one from the load the cell records."""
    if cell.get("label"):
        return str(cell["label"])
    users = _get(cell, "load", "users")
    offered = _number(cell.get("offered_rps"))
    base = f"users={users}" if users else f"rate={offered:g}" if offered is not None else "default"
    batch = cell.get("batch_size")
    return base if batch in (None, 1) else f"{base},batch={batch}"


def cell_status(cell: dict[str, Any]) -> str:
    """valid, invalid (measured, but a reason says it cannot be trusted) or failed (no measurement)."""
    if cell.get("valid") is True:
        return "valid"
    requests = cell.get("requests")
    if cell.get("error") or not requests:
        return "failed"
    return "invalid"


def _slo(run: Run, cell: dict[str, Any]) -> tuple[str | None, float | None]:
    slo = _mapping(cell.get("slo")) or _mapping(run.scenario.get("slo"))
    percentile = slo.get("percentile")
    return (str(percentile) if percentile else None), _number(slo.get("ms"))


def _slo_met(cell: dict[str, Any], percentile: str | None, slo_ms: float | None) -> bool | None:
    recorded = cell.get("slo_met")
    if isinstance(recorded, bool):
        return recorded
    value = _number(_get(cell, "latency_ms", percentile)) if percentile else None
    return None if value is None or slo_ms is None else value <= slo_ms


def _reasons(cell: dict[str, Any]) -> list[str]:
    """The error first (it says most), then every reason it does not already contain."""
    reasons = [str(r) for r in cell.get("invalid_reasons") or [] if r]
    error = str(cell["error"]) if cell.get("error") else None
    if error is None:
        return reasons
    return [error] + [reason for reason in reasons if reason not in error]


def _cell_row(run: Run, position: int, cell: dict[str, Any]) -> dict[str, Any]:
    runtime = str(cell.get("runtime") or "unknown")
    model = str(cell.get("model") or "unknown")
    label = _label(cell)
    batch = cell["batch_size"] if isinstance(cell.get("batch_size"), int) else 1
    percentile, slo_ms = _slo(run, cell)
    throughput = _number(cell.get("throughput_rps"))
    p50_low, p50_high = _ci(cell, "p50")
    p99_low, p99_high = _ci(cell, "p99")
    requests = cell["requests"] if isinstance(cell.get("requests"), int) else 0
    errors = cell["errors"] if isinstance(cell.get("errors"), int) else 0
    error_rate = _number(cell.get("error_rate"))
    row: dict[str, Any] = {
        "run_id": run.run_id, "run_index": run.index, "position": position,
        "cell_id": str(cell.get("cell_id") or f"{position + 1:03d}-{runtime}-{model}-{label}"),
        "runtime": runtime, "model": model, "scenario": str(cell.get("scenario") or run.scenario.get("name") or "-"),
        "label": label, "target": cell.get("target") or run.payload.get("target"), "batch_size": batch,
        "loop": _get(cell, "load", "loop") or run.scenario.get("loop"),
        "arrival": _get(cell, "load", "arrival"), "users": _number(_get(cell, "load", "users")),
        "offered_rps": _number(cell.get("offered_rps")), "achieved_rps": _number(cell.get("achieved_rps")),
        "throughput_rps": throughput, "goodput_rps": _number(cell.get("goodput_rps")),
        "rows_per_s": None if throughput is None else throughput * batch,
        "requests": requests, "errors": errors,
        "error_rate": error_rate if error_rate is not None else (errors / requests if requests else None),
        "p50_ci_low": p50_low, "p50_ci_high": p50_high, "p99_ci_low": p99_low, "p99_ci_high": p99_high,
        "cpu_mean": _number(_get(cell, "server", "cpu_percent_mean")),
        "cpu_max": _number(_get(cell, "server", "cpu_percent_max")),
        "rss_max_mb": _number(_get(cell, "server", "rss_mb_max")),
        "startup_s": _number(_get(cell, "server", "startup_s")),
        "generator_cpu_max": _number(_get(cell, "generator", "cpu_percent_max")),
        "parity_ok": _get(cell, "parity", "ok") if isinstance(_get(cell, "parity", "ok"), bool) else None,
        "parity_max_abs_diff": _number(_get(cell, "parity", "max_abs_diff")),
        "slo_percentile": percentile, "slo_ms": slo_ms, "slo_met": _slo_met(cell, percentile, slo_ms),
        "valid": cell.get("valid") is True, "status": cell_status(cell), "invalid_reasons": _reasons(cell),
        "error": str(cell["error"]) if cell.get("error") else None, "samples_file": cell.get("samples_file"),
        "measured_s": _number(cell.get("measured_s")), "warmup_s": _number(_get(cell, "load", "warmup_s")),
        "duration_s": _number(_get(cell, "load", "duration_s")),
    }
    for key in LATENCY_KEYS:
        row[f"{key}_ms"] = _number(_get(cell, "latency_ms", key))
    return row


def _coverage(second: int, warmup_s: float | None, duration_s: float | None) -> float:
    """How much of the second [t, t+1) lies inside the scheduled traffic [-warmup, duration).

    The first and last seconds are usually partial (a 2.5 s warm-up starts half-way through second -3):
    dividing by the coverage keeps them from showing as false dips in the rate."""
    if warmup_s is None or duration_s is None:
        return 1.0
    return max(0.0, min(second + 1.0, duration_s) - max(float(second), -warmup_s))


def _series_rows(row: dict[str, Any], cell: dict[str, Any]) -> list[dict[str, Any]]:
    series = cell.get("timeseries")
    if not isinstance(series, list):
        return []
    rows = []
    for point in series:
        if not isinstance(point, dict) or not isinstance(point.get("t"), int):
            continue
        requests = _number(point.get("requests")) or 0.0
        errors = _number(point.get("errors")) or 0.0
        coverage = _coverage(point["t"], row["warmup_s"], row["duration_s"])
        rows.append({
            "run_id": row["run_id"], "cell_id": row["cell_id"], "runtime": row["runtime"], "model": row["model"],
            "label": row["label"], "t": point["t"], "coverage": coverage, "requests": requests, "errors": errors,
            "ok_rps": (requests - errors) / coverage if coverage > 0 else None, "p50_ms": _number(point.get("p50_ms")),
            "p99_ms": _number(point.get("p99_ms")), "server_cpu_percent": _number(point.get("server_cpu_percent")),
            "server_rss_mb": _number(point.get("server_rss_mb")),
        })
    return rows


def _measured_samples(run: Run, position: int) -> pd.DataFrame | None:
    """Successful samples inside the measurement window (older files without in_window: all of them)."""
    cell = run.cells[position]
    try:
        samples = load_samples(run.folder, cell)
    except (OSError, ValueError):
        return None  # a missing or unreadable Parquet file: the figures say there are no samples
    if samples is None or "latency_ms" not in samples:
        return None
    if "in_window" in samples:
        samples = samples.loc[samples["in_window"].astype(bool)]
    if "status" in samples:
        samples = samples.loc[(samples["status"] >= 200) & (samples["status"] < 300)]
    return samples[["latency_ms"]].reset_index(drop=True)


def _unique_run_ids(payloads: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for folder, payload in payloads:
        base = str(payload.get("run_id") or folder.name)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return ids


def load_runs(run_dirs: Sequence[Path]) -> ReportData:
    """Load one or several run folders (or results.json files) into a ReportData."""
    if not run_dirs:
        raise BenchError("no run folder given", hint="pass a run folder under reports/")
    payloads = []
    for given in run_dirs:
        path = Path(given)
        payloads.append((path if path.is_dir() else path.parent, load_results(path)))
    runs = [Run(folder.resolve(), payload, run_id, index)
            for index, ((folder, payload), run_id) in enumerate(zip(payloads, _unique_run_ids(payloads), strict=True))]
    rows: list[dict[str, Any]] = []
    series_rows: list[dict[str, Any]] = []
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
