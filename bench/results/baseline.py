"""Baseline files: the compact, committed form of a run that `bench compare` reads on either side.

A baseline keeps, per runtime, the environment fingerprint and, per cell, its key, validity, the figures
the run reported and a seeded subsample of its raw samples. Why a subsample rather than a quantile
sketch: the test (bench.compare.bootstrap) resamples whole seconds of a run, so it must know which second
each latency belongs to. A uniform subsample of at most MAX_KEPT successful in-window latencies per
cell, rounded to microseconds and grouped by second of scheduled time, keeps that, is mergeable in the
only way that matters here (concatenation), and costs about 10 kB per cell.

Format changelog (BASELINE_SCHEMA_VERSION): 1. 2026-11: the first format (start_s per cell added
2026-11 without a bump; files without it compare unpaired).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from bench.config import PERCENTILE_NAMES
from bench.errors import BenchError
from bench.files import write_durably
from bench.results.sample_file import SampleSource, as_source
from bench.results.samples import BOUNDARY_TOLERANCE_S, is_success
from bench.results.schema import Cell, Latency, Measured, Record, RunResults
from bench.results.store import cell_samples, load_results, read_json, results_file

BASELINE_KIND: Literal["servebench-baseline"] = "servebench-baseline"
BASELINE_SCHEMA_VERSION = 1
MAX_KEPT = 2000
SUBSAMPLE_SEED = 0
FIGURES = (*PERCENTILE_NAMES, "max", "mean", "throughput")
# Changing these scenario fields does not change what is measured. The seed does: another Poisson draw
# is another load, burst for burst (two seeds' 5-second draws moved an A/A pair's p50 by 6%).
SCENARIO_COSMETIC = ("description",)

CellKey = tuple[str, str, str, str, int, str | None]  # runtime, model, scenario, target, batch size, label
Int64Array = np.ndarray[Any, np.dtype[np.int64]]


def scenario_sha256(results: RunResults) -> str | None:
    """Hash of the scenario and run length as run: rate, arrival, durations, batch sizes, limits, seed. The
    length keeps its old key, `profile`, so saved baselines still match."""
    if results.scenario is None:
        return None
    scenario = results.scenario.model_dump(exclude=set(SCENARIO_COSMETIC))
    profile = results.profile.model_dump() if results.profile else None
    definition = {"scenario": scenario, "profile": profile}
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


class SampleBlocks(Record):
    """A cell's subsampled latencies (us), one list per second of scheduled time, and completions per second."""

    kept: int
    successful: int
    start_s: float | None = None  # wall-clock second 0: tells whether two runs were measured side by side
    latency_us: tuple[tuple[int, ...], ...]
    completed_per_s: tuple[int, ...]


@dataclass(frozen=True)
class CellSamples:
    """The same samples as numpy arrays, as the test needs them."""

    latency_us: list[Int64Array]  # subsampled latencies, one array per second
    completed_per_s: Int64Array  # successful completions in each whole second
    kept: int
    successful: int
    start_s: float | None = None

    def blocks(self) -> SampleBlocks:
        return SampleBlocks(kept=self.kept, successful=self.successful, start_s=self.start_s,
                            latency_us=tuple(tuple(int(v) for v in block) for block in self.latency_us),
                            completed_per_s=tuple(int(v) for v in self.completed_per_s))

    @classmethod
    def of(cls, blocks: SampleBlocks) -> CellSamples:
        return cls([np.asarray(block, dtype=np.int64) for block in blocks.latency_us],
                   np.asarray(blocks.completed_per_s, dtype=np.int64), blocks.kept, blocks.successful, blocks.start_s)


def reduce_samples(samples: SampleSource | pd.DataFrame, duration_s: float | None, seed: int = SUBSAMPLE_SEED,
                   max_kept: int = MAX_KEPT) -> CellSamples | None:
    """Successful in-window requests: a seeded uniform subsample of latencies grouped by second of
    scheduled time (from the first in-window request), and completions counted per whole second.

    Two passes over batches, so a cell of any length is reduced in bounded memory: the first finds the
    first in-window request and counts the successful ones, the second keeps the chosen ones."""
    source = as_source(samples)
    if "in_window" not in source.columns:
        return None
    columns = ["scheduled", "sent", "latency_ms", "service_ms", "status", "in_window"]
    start: float | None = None
    successful = 0
    for batch in source.batches(columns):
        inside = batch.loc[batch["in_window"].astype(bool)]
        if start is None and len(inside):
            start = float(inside["scheduled"].min())
        successful += int(is_success(inside["status"]).sum())
    if start is None or not successful:
        return None
    chosen = np.sort(np.random.default_rng(seed).choice(successful, size=max_kept, replace=False)) \
        if successful > max_kept else None
    whole = math.floor(duration_s + BOUNDARY_TOLERANCE_S) if duration_s else 0
    counts = np.zeros(whole, dtype=np.int64)
    seconds: list[Int64Array] = []
    latencies: list[Int64Array] = []
    seen = 0
    for batch in source.batches(columns):
        ok = batch.loc[batch["in_window"].astype(bool) & is_success(batch["status"])]
        if ok.empty:
            continue
        second = np.floor(ok["scheduled"].to_numpy(dtype=np.float64) - start + BOUNDARY_TOLERANCE_S).astype(np.int64)
        latency = np.rint(ok["latency_ms"].to_numpy(dtype=np.float64) * 1000.0).astype(np.int64)
        if chosen is not None:
            mine = chosen[(chosen >= seen) & (chosen < seen + len(ok))] - seen
            second, latency = second[mine], latency[mine]
        seen += len(ok)
        seconds.append(second)
        latencies.append(latency)
        done = ok["sent"].to_numpy(dtype=np.float64) + ok["service_ms"].to_numpy(dtype=np.float64) / 1000.0 - start
        done = done[(done >= 0) & (done < whole)]
        counts += np.bincount(np.floor(done).astype(np.int64), minlength=whole)[:whole]
    second, latency = np.concatenate(seconds), np.concatenate(latencies)
    blocks = [latency[second == k] for k in range(int(second.max()) + 1)]
    return CellSamples(blocks, counts, kept=len(latency), successful=successful, start_s=round(start, 3))


class Figures(Latency):
    """What the run reported: latency in ms, throughput in req/s."""

    throughput: float | None = None

    def get(self, metric: str) -> float | None:
        value: float | None = getattr(self, metric, None)
        return value


class BaselineCell(Measured):
    label: str | None
    valid: bool
    invalid_reasons: tuple[str, ...] = ()
    requests: int = 0
    figures: Figures
    samples: SampleBlocks | None = None
    samples_note: str | None = None  # why samples are missing

    @property
    def key(self) -> CellKey:
        return (self.runtime, self.model, self.scenario, self.target, self.batch_size, self.label)


class BaselineSource(Record):
    """The run a baseline was saved from: what `bench compare` prints to say what it compared."""

    run_id: str
    created: str | None = None
    status: str | None = None
    git_sha: str | None = None
    host: str | None = None
    results_schema_version: int | None = None


class Subsample(Record):
    """How the latencies were subsampled, so a reader of the file knows what the blocks are."""

    max_kept: int = MAX_KEPT
    seed: int = SUBSAMPLE_SEED
    latency_unit: Literal["us"] = "us"
    blocks: str = "seconds of scheduled time from the first in-window request"


class RuntimeFingerprint(Record):
    cpu_model: str | None = None
    packages: dict[str, str] | None = None


class BaselineFile(Record):
    kind: Literal["servebench-baseline"] = BASELINE_KIND
    schema_version: int = BASELINE_SCHEMA_VERSION
    created: str | None = None
    source: BaselineSource
    subsample: Subsample = Subsample()
    scenario_sha256: str | None = None
    fingerprints: dict[str, RuntimeFingerprint]
    cells: tuple[BaselineCell, ...]


def baseline_cell(folder: Path, cell: Cell) -> BaselineCell:
    """A run's cell reduced exactly as `baseline save` reduces it, so a run and its baseline compare alike."""
    figures = Figures(**cell.latency.model_dump(), throughput=cell.rates.throughput_rps)
    samples, note = None, None
    if not cell.samples_file:
        note = "no raw samples recorded"
    else:
        try:
            source = cell_samples(folder, cell)
            reduced = None if source is None else reduce_samples(source, cell.load.duration_s or cell.measured_s)
        except (OSError, ValueError) as exc:
            note = f"raw samples not readable ({type(exc).__name__})"
        else:
            samples = None if reduced is None else reduced.blocks()
            note = None if samples else "no successful request in the measured window"
    return BaselineCell(runtime=cell.runtime, model=cell.model, scenario=cell.scenario, target=cell.target,
                        batch_size=cell.batch_size, label=cell.label, valid=cell.validity.valid,
                        invalid_reasons=cell.validity.reasons, requests=cell.counts.requests, figures=figures,
                        samples=samples, samples_note=note)


def baseline_of(folder: Path, results: RunResults) -> BaselineFile:
    """The compact baseline of a run: fingerprints, scenario hash, and per cell figures and samples."""
    environment = results.environment
    names = sorted({cell.runtime for cell in results.cells} | set(results.runtimes))
    return BaselineFile(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=BaselineSource(run_id=results.run_id, created=results.created, status=results.status,
                              git_sha=environment.git_sha, host=environment.host,
                              results_schema_version=results.schema_version),
        scenario_sha256=scenario_sha256(results),
        fingerprints={name: RuntimeFingerprint(cpu_model=environment.cpu_model,
                                               packages=environment.runtime_packages.get(name))
                      for name in names},
        cells=tuple(baseline_cell(folder, cell) for cell in results.cells),
    )


def parse_baseline(payload: dict[str, object], path: Path) -> BaselineFile:
    """A parsed baseline file, checked for a version this code reads (the raw JSON boundary)."""
    version = payload.get("schema_version")
    if not isinstance(version, int):
        raise BenchError(f"{path}: baseline without a schema_version",
                         hint="write it again with bench baseline save RUN_DIR FILE")
    if version > BASELINE_SCHEMA_VERSION:
        raise BenchError(f"{path}: baseline schema version {version} is newer than this servebench "
                         f"({BASELINE_SCHEMA_VERSION})", hint="upgrade servebench to read it")
    try:
        return BaselineFile.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BenchError(f"{path}: not a valid baseline file (field '{'.'.join(map(str, first['loc']))}': "
                         f"{first['msg']})", hint="write it again with bench baseline save RUN_DIR FILE") from None


def save_baseline(run: Path, file: Path) -> Path:
    """Write the baseline of a complete run: readable metadata, one line per cell (samples make cells long)."""
    payload = read_json(results_file(run))
    if isinstance(payload, dict) and payload.get("kind") == BASELINE_KIND:
        raise BenchError(f"{run} is already a baseline file", hint="pass the run folder it was saved from")
    results = load_results(run)
    if results.status in ("running", "interrupted", "failed"):
        raise BenchError(f"{run}: the run is {results.status}, so cells may be missing",
                         hint="save a baseline from a complete run")
    payload = baseline_of(run if run.is_dir() else run.parent, results).model_dump(mode="json")
    head = json.dumps({k: v for k, v in payload.items() if k != "cells"}, indent=1, sort_keys=False)
    cells = ",\n".join("  " + json.dumps(cell, separators=(",", ":"), allow_nan=False) for cell in payload["cells"])
    text = head[:-2] + ',\n "cells": [\n' + cells + "\n ]\n}\n"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_durably(file, text)  # never half a baseline in place of the old one
    except OSError as exc:
        raise BenchError(f"cannot write {file}: {exc.strerror}", hint="choose a path in a writable folder") from None
    return file
