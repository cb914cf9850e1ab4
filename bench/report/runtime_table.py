"""The classic runtime comparison table, measured rather than typed in.

For each runtime of a run: the lines of serving code a team had to write (the files runtime.yaml lists
under serving_code, comments, docstrings and blank lines left out), the packages installed in its
environment, the environment's size on disk, the startup time and parity seen in the cells, and the wire
protocol. Each figure says where it came from; what cannot be found is 'unknown', never a guess.
"""

from __future__ import annotations

import ast
import io
import statistics
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.config import RuntimeSpec, load_runtime, parse_runtime_spec
from bench.errors import BenchError
from bench.provision.envs import load_env
from bench.report.format import DASH, fmt_number
from bench.report.model import ReportData, Run

TOOLING = {"pip", "setuptools", "wheel"}  # present in every virtualenv; not dependencies of the runtime
NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
            tokenize.ENDMARKER}


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


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def _python_code_lines(text: str) -> int:
    """Lines holding code: a token other than a comment, and not part of a docstring."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - _docstring_lines(ast.parse(text)))


def count_code_lines(path: Path) -> int:
    """Non-blank, non-comment lines (Python docstrings count as comments)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":
        try:
            return _python_code_lines(text)
        except (SyntaxError, tokenize.TokenError):
            pass  # not parseable: fall back to the line-based count
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith(("#", "//")))


def _spec(run: Run, name: str) -> tuple[RuntimeSpec | None, str]:
    """The runtime's spec: from the folder the run recorded, else the current checkout's runtime of that name."""
    recorded = run.runtime_info(name).get("folder")
    if recorded and (Path(recorded) / "runtime.yaml").is_file():
        try:
            return parse_runtime_spec(Path(recorded) / "runtime.yaml"), "recorded folder"
        except BenchError:
            pass
    try:
        return load_runtime(name), "current checkout"
    except BenchError:
        return None, "runtime folder not found"


def _code(run: Run, name: str, spec: RuntimeSpec | None, source: str) -> tuple[list[str], int | None, str]:
    files = run.runtime_info(name).get("serving_code")
    if not isinstance(files, list):
        if spec is None:
            return [], None, "unknown: " + source
        files = list(spec.serving_code)
    if not files:
        return [], 0, "none: configuration only"
    if spec is None:
        return [str(f) for f in files], None, "unknown: " + source
    try:
        total = sum(count_code_lines(spec.folder / str(f)) for f in files)
    except OSError:
        return [str(f) for f in files], None, f"unknown: {', '.join(map(str, files))} not readable"
    return [str(f) for f in files], total, source


def _recorded_packages(run: Run, name: str) -> dict[str, str] | None:
    """The runtime's installed packages as the run recorded them (environment.runtime_packages)."""
    recorded = run.environment.get("runtime_packages")
    packages = recorded.get(name) if isinstance(recorded, dict) else None
    return {str(k): str(v) for k, v in packages.items()} if isinstance(packages, dict) and packages else None


def _packages(run: Run, name: str, env_packages: dict[str, str] | None) -> tuple[int | None, str]:
    packages = _recorded_packages(run, name)
    if packages:
        return len(set(packages) - TOOLING), "recorded by the run"
    if env_packages:
        return len(set(env_packages) - TOOLING), "current environment cache"
    return None, "unknown"


def _environment(run: Run, name: str, spec: RuntimeSpec | None) -> tuple[float | None, str, dict[str, str] | None]:
    info = run.runtime_info(name)
    for key, note in (("image_size_mb", "image, recorded by the run"), ("env_size_mb", "recorded by the run")):
        if isinstance(info.get(key), int | float):
            return float(info[key]), note, None
    if spec is None:
        return None, "unknown", None
    try:
        env = load_env(spec)
    except BenchError:
        env = None
    if env is None:
        return None, "unknown: environment not built on this machine", None
    recorded = _recorded_packages(run, name)
    skew = "" if recorded is None or recorded == env.packages else ", built from other pins than the run"
    note = "virtualenv in the cache" + skew
    return env.size_mb, note, env.packages


def _startup(cells: pd.DataFrame) -> str:
    values = [float(v) for v in cells["startup_s"].dropna().drop_duplicates()]
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


def _settings(run: Run, name: str) -> str:
    settings = run.runtime_info(name).get("settings")
    if not isinstance(settings, dict):
        return DASH
    return ", ".join(f"{key}={value}" for key, value in settings.items())


def runtime_facts(data: ReportData) -> list[RuntimeFacts]:
    rows = []
    for run in data.runs:
        cells = data.cells.loc[data.cells["run_id"] == run.run_id]
        names = sorted(set(cells["runtime"]) | set(run.runtimes))
        for name in names:
            spec, source = _spec(run, name)
            files, lines, code_note = _code(run, name, spec, source)
            size, env_note, env_packages = _environment(run, name, spec)
            packages, packages_note = _packages(run, name, env_packages)
            info = run.runtime_info(name)
            protocol, description = info.get("protocol"), info.get("description")
            mine = cells.loc[cells["runtime"] == name]
            parity, parity_ok = _parity(mine)
            rows.append(RuntimeFacts(
                run_id=run.run_id, runtime=name, protocol=str(protocol or (spec.protocol if spec else "unknown")),
                description=str(description or (spec.description if spec else "")), code_files=files,
                code_lines=lines, code_note=code_note, packages=packages, packages_note=packages_note,
                env_size_mb=size, env_note=env_note, startup=_startup(mine), parity=parity, parity_ok=parity_ok,
                settings=_settings(run, name),
            ))
    return rows


def size_text(value: float | None) -> str:
    if value is None:
        return "unknown"
    return fmt_number(value / 1024, 2, " GB") if value >= 1024 else fmt_number(value, 0, " MB")
