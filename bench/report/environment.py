"""Environment and fairness: what a reader needs to trust (or challenge) a comparison.

The machine fingerprint, the harness and per-runtime package versions (with the libraries that touch the
model lined up side by side, so a version skew between runtimes shows at a glance), CPU pinning, workers
and threads per runtime, the scenario and profile definitions, and the git revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.report.format import DASH
from bench.report.model import ReportData, Run

# Libraries whose version can change a model's answers or speed: a skew between runtimes is a caveat.
MODEL_LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "pandas", "mlflow", "mlflow-skinny", "cloudpickle",
                   "joblib", "threadpoolctl")
FINGERPRINT_LABELS = {"host": "host", "cpu_model": "CPU", "cores": "cores", "usable_cpus": "usable CPUs",
                      "memory_gb": "memory (GB)", "kernel": "kernel", "python": "Python", "git_sha": "git revision"}


@dataclass
class RuntimeSetup:
    runtime: str
    protocol: str
    settings: list[tuple[str, str]]
    packages: list[tuple[str, str]]


@dataclass
class LibraryRow:
    name: str
    versions: list[str]  # one per runtime, in RunEnvironment.runtime order; DASH when absent
    skewed: bool


@dataclass
class RunEnvironment:
    run_id: str
    status: str
    created: str
    finished: str
    target: str
    fingerprint: list[tuple[str, str]]
    harness_packages: list[tuple[str, str]]
    pinning: list[tuple[str, str]]
    scenario: list[tuple[str, str]]
    profile: list[tuple[str, str]]
    runtimes: list[RuntimeSetup] = field(default_factory=list)
    libraries: list[LibraryRow] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or DASH
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _pairs(mapping: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(key), _text(value)) for key, value in mapping.items()]


def _runtime_setups(run: Run) -> list[RuntimeSetup]:
    recorded = run.environment.get("runtime_packages")
    packages = recorded if isinstance(recorded, dict) else {}
    cell_fairness: dict[str, dict[str, Any]] = {}
    for cell in run.cells:
        fairness = cell.get("fairness")
        if isinstance(fairness, dict) and cell.get("runtime"):
            cell_fairness.setdefault(str(cell["runtime"]), {}).update(fairness)
    names = sorted(set(run.runtimes) | set(packages) | set(cell_fairness))
    setups = []
    for name in names:
        info = run.runtime_info(name)
        recorded_settings = info.get("settings")
        settings = {**(recorded_settings if isinstance(recorded_settings, dict) else {}), **cell_fairness.get(name, {})}
        listed = packages.get(name)
        mine: dict[str, Any] = listed if isinstance(listed, dict) else {}
        setups.append(RuntimeSetup(name, str(info.get("protocol") or DASH), _pairs(settings),
                                   sorted((str(k), str(v)) for k, v in mine.items())))
    return setups


def _libraries(setups: list[RuntimeSetup]) -> list[LibraryRow]:
    rows = []
    versions_by_runtime = [dict(setup.packages) for setup in setups]
    for library in MODEL_LIBRARIES:
        versions = [each.get(library, DASH) for each in versions_by_runtime]
        present = {v for v in versions if v != DASH}
        if present:
            rows.append(LibraryRow(library, versions, skewed=len(present) > 1))
    return rows


def run_environments(data: ReportData) -> list[RunEnvironment]:
    environments = []
    for run in data.runs:
        fingerprint = run.environment
        listed = fingerprint.get("packages")
        harness: dict[str, Any] = listed if isinstance(listed, dict) else {}
        setups = _runtime_setups(run)
        environments.append(RunEnvironment(
            run_id=run.run_id, status=run.status, created=_text(run.payload.get("created")),
            finished=_text(run.payload.get("finished")), target=_text(run.payload.get("target")),
            fingerprint=[(label, _text(fingerprint.get(key))) for key, label in FINGERPRINT_LABELS.items()
                         if key in fingerprint] + [(str(k), _text(v)) for k, v in fingerprint.items()
                                                   if k not in FINGERPRINT_LABELS
                                                   and k not in ("packages", "runtime_packages")],
            harness_packages=_pairs(harness), pinning=_pairs(run.fairness),
            scenario=_pairs(run.scenario), profile=_pairs(run.profile), runtimes=setups,
            libraries=_libraries(setups),
        ))
    return environments
