"""The classic runtime comparison table, measured rather than typed in, from what the run recorded.

For each runtime of a run: the lines of serving code a team had to write (counted when the run was
made), the packages installed in its environment, the environment's or image's size, the startup time
and parity seen in the cells, and the wire protocol. Nothing is read from the runtime folders or the
caches at render time, so a report re-rendered on another machine shows the facts the run had; what the
run did not record is 'unknown: not recorded by the run', never a guess.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import pandas as pd

from bench.report.format import DASH, fmt_number
from bench.report.model import ReportData, Run
from bench.results.schema import RuntimeRecord

TOOLING = {"pip", "setuptools", "wheel"}  # present in every virtualenv; not dependencies of the runtime
NOT_RECORDED = "unknown: not recorded by the run"


@dataclass(frozen=True)
class RuntimeFacts:
    run_id: str
    runtime: str
    protocol: str
    description: str
    code_files: list[str]
    code_lines: int | None
    code_note: str
    packages: int | None
    packages_note: str
    env_size_mb: float | None
    env_note: str
    startup: str
    parity: str
    parity_ok: bool | None
    settings: str


def _code(record: RuntimeRecord) -> tuple[list[str], int | None, str]:
    code = record.serving_code
    if code is None:
        return [], None, NOT_RECORDED
    if not code.files:
        return [], 0, "none: configuration only"
    if code.lines is None:
        return list(code.files), None, NOT_RECORDED + f" (counted from {', '.join(code.files)})"
    return list(code.files), code.lines, "counted when the run was made"


def _packages(run: Run, name: str, record: RuntimeRecord) -> tuple[int | None, str]:
    packages = run.results.environment.runtime_packages.get(name)
    if packages:
        return len(set(packages) - TOOLING), "recorded by the run"
    if record.provisioning and record.provisioning.packages is not None:
        return record.provisioning.packages, "recorded by the run"
    return None, NOT_RECORDED


def _environment(record: RuntimeRecord) -> tuple[float | None, str]:
    provisioning = record.provisioning
    if provisioning is None or provisioning.size_mb is None:
        return None, NOT_RECORDED
    kind = "image" if provisioning.kind == "image" else "virtualenv"
    return provisioning.size_mb, f"{kind}, recorded by the run"


def _startup(cells: pd.DataFrame) -> str:
    values = [float(v) for v in cells["server_startup_s"].dropna().drop_duplicates()]
    if not values:
        return DASH
    middle = statistics.median(values)
    if len(values) == 1 or max(values) - min(values) < 0.01:
        return f"{middle:.2f} s"
    return f"{middle:.2f} s ({min(values):.2f}{DASH}{max(values):.2f})"


def _parity(cells: pd.DataFrame) -> tuple[str, bool | None]:
    checked = cells.dropna(subset=["parity_ok"])
    if checked.empty:
        return "not checked", None
    failed = sorted(set(checked.loc[~checked["parity_ok"].astype(bool), "model"]))
    if failed:
        return f"FAILED ({', '.join(failed)})", False
    worst = checked["parity_max_abs_diff"].max()
    return ("ok" + (f" (max |Δ| {worst:.1e})" if pd.notna(worst) else "")), True


def _settings(record: RuntimeRecord) -> str:
    return ", ".join(f"{key}={value}" for key, value in record.settings.items()) or DASH


def runtime_facts(data: ReportData) -> list[RuntimeFacts]:
    rows = []
    for run in data.runs:
        cells = data.cells.loc[data.cells["run_id"] == run.run_id]
        for name in sorted(set(cells["runtime"]) | set(run.results.runtimes)):
            record = run.runtime_info(name)
            files, lines, code_note = _code(record)
            size, env_note = _environment(record)
            packages, packages_note = _packages(run, name, record)
            mine = cells.loc[cells["runtime"] == name]
            parity, parity_ok = _parity(mine)
            rows.append(RuntimeFacts(
                run_id=run.run_id, runtime=name, protocol=record.protocol or "unknown",
                description=record.description, code_files=files, code_lines=lines, code_note=code_note,
                packages=packages, packages_note=packages_note, env_size_mb=size, env_note=env_note,
                startup=_startup(mine), parity=parity, parity_ok=parity_ok, settings=_settings(record),
            ))
    return rows


def size_text(value: float | None) -> str:
    if value is None:
        return "unknown"
    return fmt_number(value / 1024, 2, " GB") if value >= 1024 else fmt_number(value, 0, " MB")
