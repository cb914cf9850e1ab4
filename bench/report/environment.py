"""Environment and fairness: what a reader needs to trust (or challenge) a comparison.

The machine fingerprint, the harness and per-runtime package versions (with the libraries that touch the
model lined up side by side, so a version skew between runtimes shows at a glance), CPU pinning, workers
and threads per runtime, the scenario and run length definitions, and the git revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    length: list[tuple[str, str]]  # the run length, results.json's `profile`
    runtimes: list[RuntimeSetup] = field(default_factory=list)
    libraries: list[LibraryRow] = field(default_factory=list)


def _text(value: object) -> str:
    if value is None:
        return DASH
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or DASH
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _pairs(mapping: Mapping[str, object]) -> list[tuple[str, str]]:
    return [(str(key), _text(value)) for key, value in mapping.items()]


def _runtime_setups(run: Run) -> list[RuntimeSetup]:
    packages = run.results.environment.runtime_packages
    cell_fairness: dict[str, dict[str, object]] = {}
    for cell in run.cells:
        fairness = cell.fairness.model_dump(exclude={"settings", "target"}, exclude_none=True)
        cell_fairness.setdefault(cell.runtime, {}).update(
            {**{k: v for k, v in fairness.items() if v != ()}, **cell.fairness.settings, **cell.fairness.target})
    names = sorted(set(run.results.runtimes) | set(packages) | set(cell_fairness))
    setups = []
    for name in names:
        info = run.runtime_info(name)
        settings = {**info.settings, **cell_fairness.get(name, {})}
        setups.append(RuntimeSetup(name, info.protocol or DASH, _pairs(settings),
                                   sorted(packages.get(name, {}).items())))
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
        results = run.results
        fingerprint = results.environment.model_dump(exclude={"packages", "runtime_packages"}, exclude_none=True)
        setups = _runtime_setups(run)
        environments.append(RunEnvironment(
            run_id=run.run_id, status=run.status, created=_text(results.created), finished=_text(results.finished),
            target=_text(results.target),
            fingerprint=[(label, _text(fingerprint[key])) for key, label in FINGERPRINT_LABELS.items()
                         if key in fingerprint],
            harness_packages=_pairs(results.environment.packages),
            pinning=_pairs(results.fairness.model_dump(exclude_none=True)),
            scenario=_pairs(results.scenario.model_dump() if results.scenario else {}),
            length=_pairs(results.profile.model_dump() if results.profile else {}), runtimes=setups,
            libraries=_libraries(setups),
        ))
    return environments
