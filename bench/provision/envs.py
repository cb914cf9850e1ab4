"""One Python environment per runtime, built from its pinned requirements.txt and cached by content hash.

Runtimes never share the harness's environment: their pins conflict (mlserver 1.7.1 caps fastapi below
0.116; BentoML and MLflow pin other things). A virtualenv is keyed by the hash of requirements.txt and
the Python version, so an unchanged runtime is never rebuilt and a changed one never reuses a stale env.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.config import RuntimeSpec, env_cache_dir
from bench.errors import BenchError
from bench.events import EventHook, Status, report_to
from bench.provision.cache_lock import cache_lock

READY_MARKER = ".servebench-env.json"
NOISE = ("is ignored: it is neither a file nor a directory",)


@dataclass(frozen=True)
class RuntimeEnv:
    """A built environment: where its interpreter lives and what it cost to build."""

    runtime: str
    path: Path
    key: str
    build_s: float
    size_mb: float
    packages: dict[str, str]

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"


def env_key(spec: RuntimeSpec) -> str:
    """Hash of everything that decides the environment's contents."""
    if not spec.requirements_file.is_file():
        raise BenchError(f"{spec.folder}: no requirements.txt", hint="a runtime folder pins its environment there")
    return requirements_key(spec.requirements_file)


def requirements_key(requirements_file: Path) -> str:
    """Hash of a pinned requirements file and the interpreter it resolves for (wheels differ by both)."""
    digest = hashlib.sha256(requirements_file.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}".encode())
    return digest.hexdigest()[:16]


def pinned_requirements(spec: RuntimeSpec) -> dict[str, str]:
    """name -> version from requirements.txt's == pins: what any environment of the runtime installs."""
    pins = {}
    for line in spec.requirements_file.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[name.split("[")[0].strip().lower()] = version.strip()
    return pins


def env_path(spec: RuntimeSpec) -> Path:
    return env_cache_dir() / f"{spec.build_name}-{env_key(spec)}"


def load_env(spec: RuntimeSpec) -> RuntimeEnv | None:
    """The cached environment if it was completely built, else None."""
    return load_env_at(spec.name, env_path(spec))


def load_env_at(runtime: str, path: Path) -> RuntimeEnv | None:
    """The environment built at path if its marker (written last) is there, else None: shared by the
    runtime's own environment and those derived from it for a model (bench.provision.model_envs)."""
    marker = path / READY_MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a half-written marker: treat the environment as not built
    return RuntimeEnv(runtime, path, meta["key"], meta["build_s"], meta["size_mb"], meta["packages"])


def _folder_size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return round(total / 2**20, 1)


def _installed_packages(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    return {item["name"].lower(): item["version"] for item in json.loads(out)}


Report = Callable[[str, str], None]  # (runtime, status line)


def _run_logged(command: list[str], log: Path, runtime: str, report: Report) -> None:
    """Run a build step, streaming its output to the log and the latest line to the progress display."""
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PIP_PROGRESS_BAR": "off", "PIP_NO_INPUT": "1"})
        assert process.stdout is not None
        for line in process.stdout:
            if any(noise in line for noise in NOISE):
                continue
            sink.write(line)
            text = line.strip()
            if text.startswith(("Collecting", "Downloading", "Installing", "Building", "Successfully")):
                report(runtime, text[:90])
        if process.wait() != 0:
            sink.flush()
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise BenchError(f"building the {runtime} environment failed (see {log}):\n{tail}",
                             hint="check requirements.txt pins and network access to the package index")


def build_env(spec: RuntimeSpec, report: Report = lambda _r, _s: None, force: bool = False) -> tuple[RuntimeEnv, bool]:
    """Build (or reuse) the runtime's environment; returns it and whether it was built now. Under the cache
    key's lock: a second process building the same environment waits for the first and reuses its work.
    A virtualenv cannot be built elsewhere and renamed (its scripts name their own path), so it is built in
    place and counts as complete only once its marker, written last, exists."""
    cached = None if force else load_env(spec)
    if cached is not None:
        report(spec.name, f"cached ({cached.path.name})")
        return cached, False
    with cache_lock(env_path(spec)):
        cached = None if force else load_env(spec)
        if cached is not None:
            report(spec.name, f"cached ({cached.path.name}, built meanwhile by another process)")
            return cached, False
        return _build_env(spec, report), True


def _build_env(spec: RuntimeSpec, report: Report) -> RuntimeEnv:
    return install_env(spec.name, env_path(spec), env_key(spec), ["-r", str(spec.requirements_file)], report,
                       requirements=str(spec.requirements_file))


def site_packages(env_path: Path) -> Path:
    return env_path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _see_base(path: Path, base: RuntimeEnv) -> None:
    """Put the base environment's packages on this one's path, after its own (its own come first)."""
    # addsitedir, not a bare path: the base's own .pth files (setuptools', editable installs) apply too
    (site_packages(path) / "_servebench_base.pth").write_text(
        f"import site; site.addsitedir({str(site_packages(base.path))!r})\n")


def _copy_scripts(base: RuntimeEnv, path: Path) -> None:
    """The base's console scripts (mlserver, bentoml...) run this interpreter, which sees the added packages."""
    shebang = f"#!{base.python}".encode()
    for script in sorted(base.bin_dir.iterdir()):
        target = path / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        content = script.read_bytes()
        if content.startswith(shebang + b"\n"):
            target.write_bytes(f"#!{path / 'bin' / 'python'}".encode() + content[len(shebang):])
            target.chmod(script.stat().st_mode)


def build_log(path: Path) -> Path:
    """Where the build of the environment at path logs (beside it: it survives a failed build's cleanup)."""
    return path.parent / f"{path.name}.build.log"


def install_env(runtime: str, path: Path, key: str, pip_args: list[str], report: Report, base: RuntimeEnv | None = None,
                **meta: object) -> RuntimeEnv:
    """Build a virtualenv in place at path and `pip install` pip_args into it; the caller holds path's
    cache_lock. Complete only once its marker (key, build time, size, packages, meta) is written, last.
    A failed step raises BenchError with the log's tail; the log stays at build_log(path).

    base: an environment this one extends (a runtime's, for a model that needs more): its packages are
    seen through a .pth line, so pip installs only what is missing (seconds, not a copy of torch), and its
    console scripts are copied with this interpreter in their first line."""
    if path.exists():
        shutil.rmtree(path)  # an interrupted build: start again
    path.parent.mkdir(parents=True, exist_ok=True)
    log = build_log(path)
    log.write_text("")
    started = time.monotonic()
    report(runtime, "creating virtualenv")
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run_logged([base_python, "-m", "venv", str(path)], log, runtime, report)
    python = path / "bin" / "python"
    if base is not None:
        _see_base(path, base)
    _run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", *pip_args], log, runtime,
                report)
    if base is not None:
        _copy_scripts(base, path)
    report(runtime, "recording installed packages")
    packages = _installed_packages(python)
    build_s = round(time.monotonic() - started, 1)
    record = {"key": key, "build_s": build_s, "size_mb": _folder_size_mb(path), "packages": packages, **meta,
              "python": platform.python_version()}
    (path / READY_MARKER).write_text(json.dumps(record, indent=1))
    report(runtime, f"built in {build_s:.0f} s")
    built = load_env_at(runtime, path)
    assert built is not None
    return built


def build_envs(specs: list[RuntimeSpec], events: EventHook[Status], force: bool = False,
               parallel: int = 4) -> dict[str, tuple[RuntimeEnv | None, bool, str | None]]:
    """Build several environments at once (pip is mostly waiting on the network); each runtime's progress
    is a Status event. Returns runtime -> (env or None, built now, error message or None)."""
    results: dict[str, tuple[RuntimeEnv | None, bool, str | None]] = {}
    report = report_to(events)

    def one(spec: RuntimeSpec) -> None:
        try:
            env, built = build_env(spec, report, force)
            results[spec.name] = (env, built, None)
        except BenchError as exc:
            report(spec.name, "failed")
            results[spec.name] = (None, False, str(exc))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, specs))
    return results


def require_env(spec: RuntimeSpec, report: Report = lambda _r, _s: None) -> RuntimeEnv:
    """The environment to run a runtime in, building it if missing (the first command works)."""
    return load_env(spec) or build_env(spec, report)[0]
