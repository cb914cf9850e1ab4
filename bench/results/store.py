"""The run store under reports/<run-id>/: one writer and one reader of results.json.

A run folder holds results.json (rewritten atomically after every cell, so a crash or Ctrl-C leaves every
finished cell on disk), samples/<cell>.parquet (raw per-request samples), run.log, servers/*.log and
load/*.log. `load_results` reads every schema version up to SCHEMA_VERSION, upgrading older files step
by step (bench.results.upgrade), and refuses newer ones with a hint.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from bench.errors import BenchError
from bench.files import inside, sync_file, sync_folder, write_durably
from bench.processes import started_at, still_runs
from bench.results.sample_file import ParquetSamples
from bench.results.schema import (
    SCHEMA_VERSION,
    CapacityRecord,
    Cell,
    RoundsRecord,
    RunResults,
    RunStatus,
    Sweep,
    TuningRecord,
)
from bench.results.upgrade import upgrade

RESULTS_FILE = "results.json"


CLAIM_FILE = ".servebench-run"  # the process that owns the folder: created exclusively, so two runs never share one


def claim_folder(folder: Path, run_id: str) -> None:
    """Make `folder` this process's run folder, atomically: a second `bench run --out SAME` is refused while
    the first lives; a folder whose owner died without a results file may be taken over."""
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"--out {folder}: a file, not a folder", hint="choose a folder for the run's files")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create {folder}: {exc.strerror}", hint="choose a writable --out folder") from None
    if (folder / RESULTS_FILE).exists():
        raise BenchError(f"{folder} already holds a run", hint="choose another --out folder")
    claim = folder / CLAIM_FILE
    for _ in range(2):
        try:
            descriptor = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(claim)
            if owner is not None and still_runs(*owner):
                raise BenchError(f"{folder} is being written by another run (pid {owner[0]})",
                                 hint="choose another --out folder") from None
            claim.unlink(missing_ok=True)  # its owner is gone and left no results: the folder is free
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{os.getpid()} {started_at(os.getpid())} {run_id}\n")
        return
    raise BenchError(f"{folder}: could not claim it", hint="choose another --out folder")


def _owner(claim: Path) -> tuple[int, str | None] | None:
    """The claim's (pid, start time); claims written before start times were kept hold "pid run_id"."""
    try:
        fields = claim.read_text().split()
        started = fields[1] if len(fields) >= 3 else None
        return int(fields[0]), started
    except (OSError, ValueError, IndexError):
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_results(path: Path, results: RunResults) -> None:
    """The one writer: durably (bench.files), so a reader or a crash never sees half a file."""
    write_durably(path, results.model_dump_json(indent=1) + "\n")


RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 4 << 20  # room to say "failed" when the disk fills: results.json of hundreds of cells fits


class RunStore:
    """One run folder. Each cell is added, and the results file rewritten, as soon as it is measured. A few
    megabytes are held in reserve while the run goes, so that a full disk still lets it end `failed`."""

    def __init__(self, folder: Path, results: RunResults) -> None:
        self.folder = folder
        self.results = results

    @classmethod
    def create(cls, folder: Path, results: RunResults) -> RunStore:
        if (folder / RESULTS_FILE).exists():
            raise BenchError(f"{folder} already holds a run", hint="choose another --out folder")
        for sub in ("samples", "servers", "load"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        store = cls(folder, results.model_copy(update={"created": _now(), "status": "running"}))
        write_durably(folder / RESERVE_FILE, bytes(RESERVE_BYTES))
        store.save()
        return store

    @property
    def results_path(self) -> Path:
        return self.folder / RESULTS_FILE

    def save(self) -> None:
        write_results(self.results_path, self.results)

    def add_cell(self, cell: Cell, samples: ParquetSamples | pd.DataFrame | None) -> Cell:
        """Move (or write) the cell's samples into samples/, then record the cell; returns the cell as stored
        (with its samples file). A Parquet file already on disk is renamed, never read."""
        relative = None
        if isinstance(samples, ParquetSamples) and samples.path.exists() and samples.rows == 0:
            samples.path.unlink()
        elif samples is not None and (isinstance(samples, ParquetSamples) or not samples.empty):
            relative = Path("samples") / f"{cell.cell_id}.parquet"
            target = self.folder / relative
            if isinstance(samples, ParquetSamples):
                os.replace(samples.path, target)  # written and fsynced by its merge
            else:
                partial = target.with_name(f".{target.name}.partial")
                samples.to_parquet(partial, index=False)
                sync_file(partial)
                os.replace(partial, target)
            sync_folder(target.parent)
        stored = cell.model_copy(update={"samples_file": None if relative is None else str(relative)})
        self.results = self.results.model_copy(update={"cells": (*self.results.cells, stored)})
        self.save()
        return stored

    def add_capacity(self, record: CapacityRecord) -> None:
        self.results = self.results.model_copy(update={"capacity": (*self.results.capacity, record)})
        self.save()

    def add_tuning(self, record: TuningRecord) -> None:
        self.results = self.results.model_copy(update={"tuning": (*self.results.tuning, record)})
        self.save()

    def set_rounds(self, rounds: tuple[RoundsRecord, ...]) -> None:
        self.results = self.results.model_copy(update={"rounds": rounds})
        self.save()

    def set_sweeps(self, sweeps: tuple[Sweep, ...]) -> None:
        self.results = self.results.model_copy(update={"sweeps": sweeps})
        self.save()

    def finish(self, status: RunStatus) -> None:
        self.results = self.results.model_copy(update={"status": status, "finished": _now()})
        try:
            self.save()
        except OSError:  # a full disk: give back the reserve and say it once more
            if not self.release_reserve():
                raise
            self.save()
        self.release_reserve()

    def release_reserve(self) -> bool:
        """Free the space held for the end of the run; whether there was any."""
        reserve = self.folder / RESERVE_FILE
        if not reserve.exists():
            return False
        reserve.unlink()
        return True


def results_file(path: Path) -> Path:
    return path / RESULTS_FILE if path.is_dir() else path


def read_json(file: Path, what: str = "results") -> object:
    """Parsed JSON, or a one-line BenchError naming the file."""
    try:
        parsed: object = json.loads(file.read_text())
    except FileNotFoundError:
        raise BenchError(f"no results at {file}", hint="pass a run folder under reports/, its results.json"
                         + (" or a baseline file" if "baseline" in what else "")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{file}: not a readable {what} file ({exc})") from None
    return parsed


def parse_results(payload: object, where: str, fallback_run_id: str) -> RunResults:
    """A parsed results payload of any version, upgraded and validated."""
    if not isinstance(payload, dict):
        raise BenchError(f"{where}: no schema_version", hint="not a servebench results file")
    if payload.get("kind") is not None:
        raise BenchError(f"{where} is a {payload['kind']} file, not a run's results",
                         hint="pass the run folder it was saved from")
    current = upgrade(payload, SCHEMA_VERSION, where)
    if not current.get("run_id"):
        current = {**current, "run_id": fallback_run_id}
    try:
        return RunResults.model_validate(current)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise BenchError(f"{where}: field '{field}': {first['msg']}",
                         hint=f"{len(exc.errors())} problem(s) in all; the file is damaged or not from servebench") \
            from None


def load_results(path: Path) -> RunResults:
    """A results.json (or the run folder holding one), whatever its schema version."""
    file = results_file(path)
    return parse_results(read_json(file), str(file), file.parent.name)


def load_samples(run_folder: Path, cell: Cell) -> pd.DataFrame | None:
    """A cell's samples, whole: for cells known to be small (rounds); readers of any cell use cell_samples."""
    if not cell.samples_file:
        return None
    return pd.read_parquet(inside(run_folder, cell.samples_file, "samples file"))


def cell_samples(run_folder: Path, cell: Cell) -> ParquetSamples | None:
    """A cell's samples file, to read in batches; None when the cell kept none."""
    if not cell.samples_file:
        return None
    path = inside(run_folder, cell.samples_file, "samples file")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return ParquetSamples(path)
