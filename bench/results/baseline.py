"""The comparable form of a run: what `bench compare` needs, read from a run folder or a baseline file.

Either side of a comparison may be a run folder, its results.json, or a compact baseline file written by
`bench baseline save`. All three become the same `Side`: per runtime an environment fingerprint, and per
cell its key, validity, summary figures and a seeded subsample of the raw samples. A run folder is reduced
exactly as `baseline save` reduces it, so comparing against a run or against its baseline file gives the
same verdicts.

Why a subsample rather than a quantile sketch: the test (bench.compare.gate) resamples whole seconds of a run,
so it must know which second each latency belongs to. A uniform subsample of at most MAX_KEPT successful
in-window latencies per cell, rounded to microseconds and grouped by second of scheduled time, keeps that,
is mergeable in the only way that matters here (concatenation), and costs about 10 kB per cell.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.results.store import load_results, load_samples
from bench.stats import BOUNDARY_TOLERANCE_S, PERCENTILES, is_success

BASELINE_KIND = "servebench-baseline"
BASELINE_SCHEMA_VERSION = 1
MAX_KEPT = 2000
SUBSAMPLE_SEED = 0
FIGURES = (*PERCENTILES, "max", "mean", "throughput")
# Changing these scenario fields does not change what is measured. The seed does: another Poisson draw
# is another load, burst for burst (two seeds' 5-second draws moved an A/A pair's p50 by 6%).
SCENARIO_COSMETIC = ("description",)

CellKey = tuple[str, str, str, str, int, str | None]  # runtime, model, scenario, target, batch size, label


def cell_key(cell: dict[str, Any]) -> CellKey:
    return (str(cell["runtime"]), str(cell["model"]), str(cell["scenario"]), str(cell["target"]),
            int(cell["batch_size"]), None if cell.get("label") is None else str(cell["label"]))


@dataclass(frozen=True)
class Fingerprint:
    """What must match for two measurements of one runtime to be comparable (None: not recorded)."""

    cpu_model: str | None
    packages: dict[str, str] | None
    scenario_sha256: str | None

    def differences(self, current: Fingerprint) -> list[str]:
        """Human-readable reasons why `current` is not comparable with this (baseline) fingerprint."""
        reasons = []
        if self.cpu_model is None or current.cpu_model is None:
            reasons.append(f"CPU model not recorded in the {_unrecorded(self.cpu_model)}")
        elif self.cpu_model != current.cpu_model:
            reasons.append(f"CPU model {self.cpu_model!r} -> {current.cpu_model!r}")
        if self.packages is None or current.packages is None:
            reasons.append(f"runtime package versions not recorded in the {_unrecorded(self.packages)}")
        elif self.packages != current.packages:
            reasons.append("runtime packages changed: " + package_changes(self.packages, current.packages))
        if self.scenario_sha256 is None or current.scenario_sha256 is None:
            reasons.append(f"scenario definition not recorded in the {_unrecorded(self.scenario_sha256)}")
        elif self.scenario_sha256 != current.scenario_sha256:
            reasons.append(f"scenario or profile definition changed (sha256 {self.scenario_sha256[:12]} -> "
                           f"{current.scenario_sha256[:12]})")
        return reasons


def _unrecorded(baseline_value: object) -> str:
    return "baseline" if baseline_value is None else "current run"


def package_changes(before: dict[str, str], after: dict[str, str], shown: int = 4) -> str:
    changes = [f"{name} {before.get(name, 'absent')} -> {after.get(name, 'absent')}"
               for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    more = f" (and {len(changes) - shown} more)" if len(changes) > shown else ""
    return ", ".join(changes[:shown]) + more


def scenario_sha256(payload: dict[str, Any]) -> str | None:
    """Hash of the scenario and profile as run: rate, arrival, durations, batch sizes, limits, seed."""
    scenario = payload.get("scenario")
    if not isinstance(scenario, dict):
        return None
    definition = {"scenario": {k: v for k, v in scenario.items() if k not in SCENARIO_COSMETIC},
                  "profile": payload.get("profile")}
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class CellSamples:
    """A cell's raw samples as the test needs them."""

    latency_us: list[np.ndarray[Any, np.dtype[np.int64]]]  # subsampled latencies, one array per second
    completed_per_s: np.ndarray[Any, np.dtype[np.int64]]  # successful completions in each whole second
    kept: int
    successful: int
    # wall-clock time (Unix s) where second 0 begins: tells whether two runs were measured side by side
    start_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "successful": self.successful, "start_s": self.start_s,
                "latency_us": [block.tolist() for block in self.latency_us],
                "completed_per_s": self.completed_per_s.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellSamples:
        start = data.get("start_s")
        return cls([np.asarray(block, dtype=np.int64) for block in data["latency_us"]],
                   np.asarray(data["completed_per_s"], dtype=np.int64), int(data["kept"]), int(data["successful"]),
                   float(start) if isinstance(start, int | float) else None)


def reduce_samples(frame: pd.DataFrame, duration_s: float | None, seed: int = SUBSAMPLE_SEED,
                   max_kept: int = MAX_KEPT) -> CellSamples | None:
    """Successful in-window requests: a seeded uniform subsample of latencies grouped by second of
    scheduled time (from the first in-window request), and completions counted per whole second."""
    if "in_window" not in frame.columns:
        return None
    inside = frame.loc[frame["in_window"].astype(bool)]
    ok = inside.loc[is_success(inside["status"])]
    if ok.empty:
        return None
    start = float(inside["scheduled"].min())
    second = np.floor(ok["scheduled"].to_numpy(dtype=np.float64) - start + BOUNDARY_TOLERANCE_S).astype(np.int64)
    latency = np.rint(ok["latency_ms"].to_numpy(dtype=np.float64) * 1000.0).astype(np.int64)
    if len(ok) > max_kept:
        chosen = np.sort(np.random.default_rng(seed).choice(len(ok), size=max_kept, replace=False))
        second, latency = second[chosen], latency[chosen]
    blocks = [latency[second == k] for k in range(int(second.max()) + 1)]
    whole = math.floor(duration_s + BOUNDARY_TOLERANCE_S) if duration_s else 0
    done = ok["sent"].to_numpy(dtype=np.float64) + ok["service_ms"].to_numpy(dtype=np.float64) / 1000.0 - start
    done = done[(done >= 0) & (done < whole)]
    counts = np.bincount(np.floor(done).astype(np.int64), minlength=whole).astype(np.int64)
    return CellSamples(blocks, counts, kept=len(latency), successful=len(ok), start_s=round(start, 3))


@dataclass(frozen=True)
class CellData:
    """One cell of one side: identity, validity, the figures the run reported, and its samples."""

    key: CellKey
    valid: bool
    invalid_reasons: list[str]
    requests: int
    figures: dict[str, float | None]  # latency in ms (p50..p999, max, mean), throughput in req/s
    samples: CellSamples | None
    samples_note: str | None = None  # why samples are missing

    def as_json(self) -> dict[str, Any]:
        runtime, model, scenario, target, batch_size, label = self.key
        return {"runtime": runtime, "model": model, "scenario": scenario, "target": target,
                "batch_size": batch_size, "label": label, "valid": self.valid,
                "invalid_reasons": self.invalid_reasons, "requests": self.requests, "figures": self.figures,
                "samples": self.samples.as_json() if self.samples else None, "samples_note": self.samples_note}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellData:
        samples = data.get("samples")
        return cls(cell_key(data), bool(data["valid"]), [str(r) for r in data.get("invalid_reasons") or []],
                   int(data.get("requests") or 0), {name: _number(data["figures"].get(name)) for name in FIGURES},
                   CellSamples.from_json(samples) if samples else None, data.get("samples_note"))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Side:
    """One side of a comparison, whatever file it came from."""

    path: Path
    kind: str  # "run" or "baseline"
    run_id: str
    status: str | None
    git_sha: str | None
    fingerprints: dict[str, Fingerprint]
    cells: dict[CellKey, CellData]

    def describe(self) -> str:
        sha = f", git {self.git_sha[:12]}" if self.git_sha else ""
        return f"{self.path} ({self.kind} {self.run_id}{sha})"


def _cell_from_run(folder: Path, cell: dict[str, Any]) -> CellData:
    latency = cell.get("latency_ms") or {}
    figures = {name: _number(latency.get(name)) for name in FIGURES if name != "throughput"}
    figures["throughput"] = _number(cell.get("throughput_rps"))
    samples, note = None, None
    if not cell.get("samples_file"):
        note = "no raw samples recorded"
    else:
        try:
            frame = load_samples(folder, cell)
        except (OSError, ValueError) as exc:
            note = f"raw samples not readable ({type(exc).__name__})"
        else:
            duration = (cell.get("load") or {}).get("duration_s") or cell.get("measured_s")
            samples = None if frame is None else reduce_samples(frame, _number(duration))
            note = None if samples else "no successful request in the measured window"
    return CellData(cell_key(cell), bool(cell.get("valid")), [str(r) for r in cell.get("invalid_reasons") or []],
                    int(cell.get("requests") or 0), figures, samples, note)


def _unique(cells: list[CellData], path: Path) -> dict[CellKey, CellData]:
    by_key: dict[CellKey, CellData] = {}
    for cell in cells:
        if cell.key in by_key:
            raise BenchError(f"{path}: two cells measure {' '.join(map(str, cell.key))}",
                             hint="compare runs with one cell per runtime, model, scenario, target, batch and load")
        by_key[cell.key] = cell
    return by_key


def side_from_run(path: Path, payload: dict[str, Any]) -> Side:
    folder = path if path.is_dir() else path.parent
    environment = payload.get("environment") or {}
    runtime_packages = environment.get("runtime_packages") or {}
    cells = [_cell_from_run(folder, cell) for cell in payload.get("cells") or []]
    runtimes = sorted({cell.key[0] for cell in cells} | set(payload.get("runtimes") or {}))
    scenario_hash = scenario_sha256(payload)
    fingerprints = {name: Fingerprint(environment.get("cpu_model"), runtime_packages.get(name), scenario_hash)
                    for name in runtimes}
    return Side(path, "run", str(payload.get("run_id", path.name)), payload.get("status"),
                environment.get("git_sha"), fingerprints, _unique(cells, path))


def side_from_baseline(path: Path, payload: dict[str, Any]) -> Side:
    try:
        source = payload["source"]
        scenario_hash = payload.get("scenario_sha256")
        fingerprints = {name: Fingerprint(entry.get("cpu_model"), entry.get("packages"), scenario_hash)
                        for name, entry in payload["fingerprints"].items()}
        cells = [CellData.from_json(cell) for cell in payload["cells"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchError(f"{path}: not a valid baseline file ({type(exc).__name__}: {exc})",
                         hint="write it again with bench baseline save RUN_DIR FILE") from None
    return Side(path, "baseline", str(source.get("run_id")), source.get("status"), source.get("git_sha"),
                fingerprints, _unique(cells, path))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"no results at {path}",
                         hint="pass a run folder under reports/, its results.json or a baseline file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: not a readable results or baseline file ({exc})") from None


def load_side(path: Path) -> Side:
    """A run folder, a results.json or a baseline file, checked for a schema version this code reads."""
    if not path.is_dir():
        payload = _read_json(path)
        if isinstance(payload, dict) and payload.get("kind") == BASELINE_KIND:
            version = payload.get("schema_version")
            if not isinstance(version, int):
                raise BenchError(f"{path}: baseline without a schema_version",
                                 hint="write it again with bench baseline save RUN_DIR FILE")
            if version > BASELINE_SCHEMA_VERSION:
                raise BenchError(f"{path}: baseline schema version {version} is newer than this servebench "
                                 f"({BASELINE_SCHEMA_VERSION})", hint="upgrade servebench to read it")
            return side_from_baseline(path, payload)
    return side_from_run(path, load_results(path))


def baseline_payload(run: Path) -> dict[str, Any]:
    """The compact baseline of a run: fingerprints, scenario hash, and per cell figures and samples."""
    payload = load_results(run)
    if payload.get("kind") == BASELINE_KIND:
        raise BenchError(f"{run} is already a baseline file", hint="pass the run folder it was saved from")
    if payload.get("status") in ("running", "interrupted"):
        raise BenchError(f"{run}: the run is {payload['status']}, so cells may be missing",
                         hint="save a baseline from a complete run")
    side = side_from_run(run, payload)
    environment = payload.get("environment") or {}
    return {
        "kind": BASELINE_KIND, "schema_version": BASELINE_SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"run_id": side.run_id, "created": payload.get("created"), "status": side.status,
                   "git_sha": side.git_sha, "host": environment.get("host"),
                   "results_schema_version": payload["schema_version"]},
        "subsample": {"max_kept": MAX_KEPT, "seed": SUBSAMPLE_SEED, "latency_unit": "us",
                      "blocks": "seconds of scheduled time from the first in-window request"},
        "scenario_sha256": scenario_sha256(payload),
        "fingerprints": {name: {"cpu_model": fp.cpu_model, "packages": fp.packages}
                         for name, fp in side.fingerprints.items()},
        "cells": [cell.as_json() for cell in side.cells.values()],
    }


def save_baseline(run: Path, file: Path) -> Path:
    """Write the baseline of a run: readable metadata, one line per cell (samples make cells long)."""
    payload = baseline_payload(run)
    head = json.dumps({k: v for k, v in payload.items() if k != "cells"}, indent=1, sort_keys=False)
    cells = ",\n".join("  " + json.dumps(cell, separators=(",", ":"), allow_nan=False) for cell in payload["cells"])
    text = head[:-2] + ',\n "cells": [\n' + cells + "\n ]\n}\n"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    except OSError as exc:
        raise BenchError(f"cannot write {file}: {exc.strerror}", hint="choose a path in a writable folder") from None
    return file
