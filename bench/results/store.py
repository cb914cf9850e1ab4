"""The versioned results schema and the run store under reports/<run-id>/.

A run folder holds results.json (rewritten atomically after every cell, so a crash or Ctrl-C leaves every
finished cell on disk), samples/<cell>.parquet (raw per-request samples), run.log, servers/*.log and
load/*.log. Readers accept every schema version up to SCHEMA_VERSION and refuse newer ones.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import project_root
from bench.errors import BenchError

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
HARNESS_PACKAGES = ("servebench", "locust", "numpy", "pandas", "mlflow", "scikit-learn", "torch")


def new_run_id(label: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:40]
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_root(),
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def environment_fingerprint(runtime_packages: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What a comparison between two runs must know: machine, software, revision."""
    versions: dict[str, str | None] = {}
    for name in HARNESS_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "runtime_packages": runtime_packages,
        "git_sha": git_revision(),
    }


def _write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=1, allow_nan=False, default=str) + "\n")
    os.replace(temporary, path)


class RunStore:
    """One run folder. Cells are appended and the results file rewritten after each."""

    def __init__(self, folder: Path, payload: dict[str, Any]) -> None:
        self.folder = folder
        self.payload = payload

    @classmethod
    def create(cls, folder: Path, run_id: str, meta: dict[str, Any]) -> RunStore:
        if (folder / RESULTS_FILE).exists():
            raise BenchError(f"{folder} already holds a run", hint="choose another --out folder")
        for sub in ("samples", "servers", "load"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        payload = {"schema_version": SCHEMA_VERSION, "run_id": run_id,
                   "created": datetime.now(UTC).isoformat(timespec="seconds"), "status": "running",
                   **meta, "cells": []}
        store = cls(folder, payload)
        store.save()
        return store

    @property
    def results_path(self) -> Path:
        return self.folder / RESULTS_FILE

    def save(self) -> None:
        _write_json_atomically(self.results_path, self.payload)

    def add_cell(self, cell: dict[str, Any], samples: pd.DataFrame | None) -> None:
        if samples is not None and not samples.empty:
            relative = Path("samples") / f"{cell['cell_id']}.parquet"
            samples.to_parquet(self.folder / relative, index=False)
            cell["samples_file"] = str(relative)
        else:
            cell["samples_file"] = None
        self.payload["cells"].append(cell)
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.payload[key] = value
        self.save()

    def finish(self, status: str) -> None:
        self.payload["status"] = status
        self.payload["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.save()


def load_results(path: Path) -> dict[str, Any]:
    """A results.json (or the run folder holding one), checked for a readable schema version."""
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        payload = json.loads(file.read_text())
    except FileNotFoundError:
        raise BenchError(f"no results at {file}", hint="pass a run folder under reports/ or its results.json") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{file}: not a readable results file ({exc})") from None
    version = payload.get("schema_version") if isinstance(payload, dict) else None
    if not isinstance(version, int):
        raise BenchError(f"{file}: no schema_version", hint="not a servebench results file")
    if version > SCHEMA_VERSION:
        raise BenchError(f"{file}: schema version {version} is newer than this servebench ({SCHEMA_VERSION})",
                         hint="upgrade servebench to read it")
    result: dict[str, Any] = payload
    return result


def load_samples(run_folder: Path, cell: dict[str, Any]) -> pd.DataFrame | None:
    relative = cell.get("samples_file")
    if not relative:
        return None
    return pd.read_parquet(run_folder / relative)
