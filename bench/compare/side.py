"""The comparable form of a run: what `bench compare` needs, from a run folder or a baseline file.

Either side of a comparison may be a run folder, its results.json, or a compact baseline file written by
`bench baseline save`. All three become the same `Side`: per runtime an environment fingerprint, and per
cell its key, validity, summary figures and its samples. A run folder is reduced exactly as
`baseline save` reduces it (bench.results.baseline), so comparing against a run or against its
baseline file gives the same verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.results.baseline import (
    BASELINE_KIND,
    BaselineCell,
    BaselineFile,
    CellKey,
    CellSamples,
    Figures,
    baseline_of,
    parse_baseline,
)
from bench.results.store import parse_results, read_json, results_file


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
            reasons.append(f"scenario or run length definition changed (sha256 {self.scenario_sha256[:12]} -> "
                           f"{current.scenario_sha256[:12]})")
        return reasons


def _unrecorded(baseline_value: object) -> str:
    return "baseline" if baseline_value is None else "current run"


def package_changes(before: dict[str, str], after: dict[str, str], shown: int = 4) -> str:
    changes = [f"{name} {before.get(name, 'absent')} -> {after.get(name, 'absent')}"
               for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    more = f" (and {len(changes) - shown} more)" if len(changes) > shown else ""
    return ", ".join(changes[:shown]) + more


@dataclass(frozen=True)
class CellData:
    """One cell of one side: identity, validity, the figures the run reported, and its samples."""

    key: CellKey
    valid: bool
    invalid_reasons: list[str]
    requests: int
    figures: Figures
    samples: CellSamples | None
    samples_note: str | None = None  # why samples are missing

    @classmethod
    def of(cls, cell: BaselineCell) -> CellData:
        return cls(cell.key, cell.valid, list(cell.invalid_reasons), cell.requests, cell.figures,
                   CellSamples.of(cell.samples) if cell.samples else None, cell.samples_note)


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


def _unique(cells: list[CellData], path: Path) -> dict[CellKey, CellData]:
    by_key: dict[CellKey, CellData] = {}
    for cell in cells:
        if cell.key in by_key:
            raise BenchError(f"{path}: two cells measure {' '.join(map(str, cell.key))}",
                             hint="compare runs with one cell per runtime, model, scenario, target, batch and load")
        by_key[cell.key] = cell
    return by_key


def side_of(path: Path, baseline: BaselineFile, kind: str) -> Side:
    fingerprints = {name: Fingerprint(entry.cpu_model, entry.packages, baseline.scenario_sha256)
                    for name, entry in baseline.fingerprints.items()}
    return Side(path, kind, baseline.source.run_id, baseline.source.status, baseline.source.git_sha, fingerprints,
                _unique([CellData.of(cell) for cell in baseline.cells], path))


def load_side(path: Path) -> Side:
    """A run folder, a results.json or a baseline file, checked for a schema version this code reads."""
    file = results_file(path)
    payload = read_json(file, "results or baseline")
    if isinstance(payload, dict) and payload.get("kind") == BASELINE_KIND:
        return side_of(path, parse_baseline(payload, path), "baseline")
    results = parse_results(payload, str(file), file.parent.name)
    return side_of(path, baseline_of(file.parent, results), "run")
