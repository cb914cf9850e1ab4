"""The shape of bench/ itself: modules stay small, imports point one way and never cycle, and the harness
names no runtime (a runtime is a folder)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.config import available_runtimes

PACKAGE = Path(__file__).resolve().parent.parent / "bench"
MAX_LINES = 400
# Layers from the top down (DESIGN.md): a module may import its own layer or a lower one, never a higher.
LAYERS = [
    {"cli"},
    {"measure", "compare"},
    {"targets", "stats", "server_time", "report"},
    {"load"},  # the load generator knows plans, protocols and results, never a target
    {"results", "models", "provision"},
    {"config", "protocols", "errors", "events", "processes", "process_tree", "knobs", "runtime_options",
     "protocol_variants", "paths", "order_statistics", "v2_grpc_messages", "redact", "ports", "files",
     "model_spec"},
]


# Lines naming Python libraries (version lists, loggers): the MLflow library shares the mlflow runtime's name.
LIBRARY_LISTS = ('"scikit-learn"', '"alembic"', '"skl2onnx"', '"mlflow-skinny"')


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """bench modules this file imports at module level or inside functions (lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules and name != "bench"}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next((index for index, layer in enumerate(LAYERS) if top in layer), len(LAYERS))


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_imports_point_downwards() -> None:
    modules = _modules()
    upward = []
    for name, path in modules.items():
        for imported in _imports(path, modules):
            if _layer(imported) < _layer(name):
                upward.append(f"{name} -> {imported}")
    assert upward == []


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # a package's __init__ re-exporting its own modules is not a cycle through the package
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not (name.startswith(dep + ".") and dep in modules)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*trail[trail.index(dep):], dep] if dep in trail else [node, dep])
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def _package(module: str) -> str:
    """bench.targets.kserve.target -> bench.targets; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def test_no_package_cycle() -> None:
    """Module cycles aside, two packages must not import each other (load -> targets -> load was one)."""
    modules = _modules()
    edges = {(_package(name), _package(imported)) for name, path in modules.items()
             for imported in _imports(path, modules) if _package(name) != _package(imported)}
    assert sorted((a, b) for a, b in edges if (b, a) in edges) == []


# Names a runtime shares with something else the harness owns, and the only places that may spell them:
# the KServe target (its name, namespace and Helm release) and the Seldon protocol's codec.
OTHER_MEANINGS = {"kserve": ("targets/", "cli/run.py"), "seldon": ("protocols.py",)}


@pytest.mark.parametrize("runtime", available_runtimes())
def test_the_harness_names_no_runtime(runtime: str) -> None:
    """Facts about a runtime live in its folder; only the MLflow *library* (tracking store, model flavours)
    or the ONNX format is named in bench/, never the mlflow or onnx runtime; a name that is also a target's
    or a protocol's appears only where that target or protocol lives."""
    owners = OTHER_MEANINGS.get(runtime, ())
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if any(library in code for library in LIBRARY_LISTS):
                continue  # a list of Python packages or loggers, where "mlflow" is the library
            if str(path.relative_to(PACKAGE)).startswith(owners):
                continue
            if f'"{runtime}"' in code or f"'{runtime}'" in code:
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []
