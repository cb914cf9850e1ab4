"""What docker-compose.yml needs and cannot compute itself: the images, the model links and the .env file.

Images are tagged by a content hash of their inputs (bench.provision.images) and need the offline wheelhouse on
machines without a reachable registry, neither of which compose can do. `bench compose prepare` builds
(or reuses) the same runtime images as `bench run --target docker`, plus a small Locust image, and writes
their tags with the machine's paths, CPU sets and limits into the env file compose interpolates. Ports
keep their defaults in docker-compose.yml itself, where a reader looks for them.

Models are linked as <state>/compose/models/<name> -> the local copy of the current version, so one
variable (SERVEBENCH_MODEL) picks the model while the copies keep their fingerprinted folders.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.config import load_runtime, project_root, state_dir
from bench.errors import BenchError
from bench.models.catalog import SPECS, get_spec
from bench.models.registry import LocalModel, find_local, resolve
from bench.provision.images import ImageInfo, ImageSource, ensure_image
from bench.targets.docker import DEFAULT_MEMORY
from bench.targets.launch import CpuPlan

RUNTIMES = ("mlserver", "mlflow", "fastapi", "bentoml")  # the services docker-compose.yml defines
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding the bench package
LOCUSTFILE = PACKAGE_PARENT / "bench" / "load" / "locustfile.py"
ENV_HEADER = "# Written by `bench compose prepare`"
PORT_DEFAULT = re.compile(r"\$\{(SERVEBENCH_\w+_PORT):-(\d+)\}")
Report = Callable[[str, str], None]


def compose_file() -> Path:
    return project_root() / "docker-compose.yml"


def bench_imports(entry: Path) -> list[Path]:
    """Every bench module entry imports, transitively, with its packages' __init__.py (sorted).

    The Locust image gets exactly these, so it needs none of the harness's heavy dependencies and is
    not rebuilt when an unrelated module changes."""
    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "bench":
                    continue
                for depth in range(1, len(parts) + 1):
                    package = PACKAGE_PARENT.joinpath(*parts[:depth], "__init__.py")
                    if package.is_file():
                        todo.append(package)
                module = PACKAGE_PARENT.joinpath(*parts).with_suffix(".py")
                if module.is_file():
                    todo.append(module)
    return sorted(seen)


def locust_image_source() -> ImageSource:
    """The Locust image: docker/locust/ plus the bench modules the locustfile imports."""
    folder = project_root() / "docker" / "locust"
    modules = tuple((str(path.relative_to(PACKAGE_PARENT)), path) for path in bench_imports(LOCUSTFILE))
    return ImageSource("locust", (("Dockerfile", folder / "Dockerfile"),
                                  ("requirements.txt", folder / "requirements.txt"), *modules),
                       folder / "requirements.txt")


def link_models(models: list[LocalModel], folder: Path) -> None:
    """folder/<name> -> the model's local copy (relative links, replaced atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    for model in models:
        link = folder / model.name
        staging = folder / f".{model.name}.new"
        staging.unlink(missing_ok=True)
        staging.symlink_to(os.path.relpath(model.model_dir.parent, folder))
        os.replace(staging, link)


def env_values(model: str, images: Mapping[str, str], cpus: CpuPlan, memory: str, workers: int,
               owner: tuple[int, int], home: Path) -> dict[str, str]:
    """The variables docker-compose.yml requires, in the order the env file lists them."""
    return {
        "COMPOSE_PROJECT_NAME": "servebench",
        # docker-compose 1.x gives up on a daemon call after 60 s; creating a container of a 2 GB image takes
        # longer than that under the vfs storage driver when several are created at once
        "COMPOSE_HTTP_TIMEOUT": "600",
        "SERVEBENCH_MODEL": model,
        "SERVEBENCH_HOME": str(home),
        "SERVEBENCH_MODELS": str(home / "compose" / "models"),
        **{f"SERVEBENCH_{name.upper()}_IMAGE": tag for name, tag in images.items()},
        "SERVEBENCH_SERVER_CPUS": ",".join(map(str, cpus.server)),
        "SERVEBENCH_SERVER_CPU_COUNT": str(len(cpus.server)),
        "SERVEBENCH_GENERATOR_CPUS": ",".join(map(str, cpus.generator)),
        "SERVEBENCH_MEMORY": memory,
        "SERVEBENCH_LOCUST_WORKERS": str(workers),
        "SERVEBENCH_UID": str(owner[0]),
        "SERVEBENCH_GID": str(owner[1]),
    }


def render_env(values: Mapping[str, str]) -> str:
    lines = [f"{ENV_HEADER} on {datetime.now():%Y-%m-%d %H:%M}; rerun it after changing a runtime, the",
             "# locustfile or a model. Ports default in docker-compose.yml; export SERVEBENCH_*_PORT to change them.",
             *(f"{key}={value}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """Write the env file, refusing to overwrite one this command did not write (a user's own .env)."""
    if path.exists() and not path.read_text().startswith(ENV_HEADER):
        raise BenchError(f"{path} exists and was not written by `bench compose prepare`",
                         hint="pass --env-file OTHER and run `docker-compose --env-file OTHER up`")
    if any("\n" in value or " " in value for value in values.values()):
        raise BenchError("a path or tag with spaces or newlines cannot go into a compose env file",
                         hint="set SERVEBENCH_HOME to a path without spaces")
    path.write_text(render_env(values))


def default_ports(compose_text: str, environ: Mapping[str, str]) -> dict[str, int]:
    """SERVEBENCH_*_PORT as compose will resolve them: the environment, else the file's defaults."""
    return {key: int(environ.get(key, default)) for key, default in PORT_DEFAULT.findall(compose_text)}


@dataclass(frozen=True)
class Prepared:
    """What prepare did, for the summary table and the next steps it prints."""

    env_file: Path
    values: dict[str, str]
    images: list[ImageInfo]
    ports: dict[str, int]


def prepare(model_name: str, env_file: Path, base_image: str, offline: bool, cpus: CpuPlan,
            memory: str = DEFAULT_MEMORY, workers: int | None = None, parallel: int = 2,
            log_dir: Path | None = None, report: Report = lambda _name, _text: None) -> Prepared:
    """Build or reuse the five images, link the models, write the env file."""
    log_dir = log_dir or state_dir() / "logs" / f"compose-{datetime.now():%Y%m%d-%H%M%S}"
    chosen = resolve(get_spec(model_name), lambda message: report(model_name, message))
    present = [local for spec in SPECS.values() if spec.name != model_name and (local := find_local(spec))]
    home = state_dir()
    link_models([chosen, *present], home / "compose" / "models")

    def build(name: str) -> ImageInfo:
        source = locust_image_source() if name == "locust" else load_runtime(name)
        return ensure_image(source, base_image, offline, log_dir / f"{name}-image-build.log", report)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        images = list(pool.map(build, [*RUNTIMES, "locust"]))
    database = home / "mlflow.db"
    owner = (database if database.exists() else home).stat()
    values = env_values(model_name, {info.runtime: info.tag for info in images}, cpus, memory,
                        workers or max(1, len(cpus.generator)), (owner.st_uid, owner.st_gid), home)
    write_env(env_file, values)
    return Prepared(env_file, values, images, default_ports(compose_file().read_text(), os.environ))


def next_steps(prepared: Prepared) -> str:
    """What to run and open once the env file is written."""
    flag = "" if prepared.env_file == compose_file().parent / ".env" else f" --env-file {prepared.env_file}"
    urls = {"Locust": "LOCUST", "MLflow UI": "MLFLOW_UI", **{name: name.upper() for name in RUNTIMES}}
    lines = [f"wrote {prepared.env_file} (model {prepared.values['SERVEBENCH_MODEL']}); now "
             f"`docker-compose{flag} up -d` (or `docker compose{flag} up -d`), then:"]
    lines += [f"  {label:<10} http://127.0.0.1:{prepared.ports.get(f'SERVEBENCH_{key}_PORT', '?')}"
              for label, key in urls.items()]
    return "\n".join(lines)

