"""One Docker image per runtime, built from the same pinned requirements.txt as its local environment.

Images are tagged by a content hash of their inputs (Dockerfile, requirements, serving code, base image,
build mode) and reused while those are unchanged. The model is not baked in: it is mounted read-only at
/mnt/models, as KServe's storage initializer provides it, so one image serves every model. The same
machinery builds images that are not runtimes (docker-compose.yml's Locust image): an ImageSource names
the files of any build context.

Offline (air-gapped) mode: the wheels are fetched on the host with `pip wheel` into a wheelhouse
cached by requirements hash, served to the build on loopback, and installed with
`--no-index --find-links`, so nothing inside `docker build` needs the package index. Serving them rather
than copying them into the build context keeps ~300 MB of wheels out of the image's layers.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.config import RuntimeSpec, env_cache_dir
from bench.errors import BenchError
from bench.events import EventHook, Status, report_to
from bench.provision.cache_lock import cache_lock
from bench.provision.containers import daemon_problem, docker, docker_environment, docker_path, inspect
from bench.provision.envs import NOISE, requirements_key

DEFAULT_BASE_IMAGE = "python:3.11-slim"
IMAGE_REPOSITORY = "servebench"
Report = Callable[[str, str], None]


def base_image_default() -> str:
    return os.environ.get("SERVEBENCH_BASE_IMAGE", DEFAULT_BASE_IMAGE)


def offline_default() -> bool:
    return os.environ.get("SERVEBENCH_DOCKER_OFFLINE", "") not in ("", "0", "false", "no")


def cache_root() -> Path:
    return env_cache_dir().parent


@dataclass(frozen=True)
class ImageInfo:
    runtime: str
    tag: str
    base_image: str
    offline: bool
    build_s: float | None
    size_mb: float
    built_now: bool


def image_inputs(spec: RuntimeSpec) -> list[Path]:
    """The files the Dockerfile copies or depends on."""
    files = [spec.folder / "Dockerfile", spec.requirements_file, *spec.serving_code_paths()]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise BenchError(f"{spec.folder}: missing {', '.join(missing)}", hint="a runtime folder needs a Dockerfile")
    return files


@dataclass(frozen=True)
class ImageSource:
    """What one image is built from: its build context as (path in the context, file on disk) pairs, the
    Dockerfile first, and the requirements its offline wheelhouse is downloaded for. A runtime's context is
    its folder; any other context (one gathering files from across the checkout) is staged into a temporary
    folder, so the build sees exactly the hashed files."""

    name: str
    files: tuple[tuple[str, Path], ...]
    requirements_file: Path
    folder: Path | None = None  # a folder already holding the files at their context paths

    def tag(self, base_image_id: str, offline: bool) -> str:
        digest = hashlib.sha256()
        for name, path in self.files:
            digest.update(name.encode() + b"\0" + path.read_bytes())
        digest.update(f"{base_image_id}:{'offline' if offline else 'online'}".encode())
        return f"{IMAGE_REPOSITORY}/{self.name}:{digest.hexdigest()[:16]}"

    @contextmanager
    def context(self) -> Iterator[Path]:
        if self.folder is not None:
            yield self.folder
            return
        with tempfile.TemporaryDirectory(prefix=f"servebench-{self.name}-context-") as staging:
            for name, path in self.files:
                (Path(staging) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, Path(staging) / name)
            yield Path(staging)


def runtime_source(spec: RuntimeSpec) -> ImageSource:
    """The runtime folder is the context, unless its serving code includes shared files from outside it
    (../common/...): then all of them are staged flat, beside the runtime's own code."""
    inputs = image_inputs(spec)
    folder = spec.folder.resolve()
    inside = all(path.resolve().parent == folder for path in inputs)
    return ImageSource(spec.build_name, tuple((path.name, path) for path in inputs), spec.requirements_file,
                       spec.folder if inside else None)


def image_tag(spec: RuntimeSpec, base_image_id: str, offline: bool) -> str:
    return runtime_source(spec).tag(base_image_id, offline)


def _base_identity(base_image: str, details: dict[str, object] | None) -> str:
    """The base image's ID when it is present (a rebuilt base changes every tag), else its name."""
    return str(details["Id"]) if details else base_image


def planned_tag(spec: RuntimeSpec | ImageSource, base_image: str, offline: bool) -> str:
    """The tag ensure_image gives, without building: a dry run names the images it would load."""
    details = inspect("image", base_image) if daemon_problem() is None else None
    source = spec if isinstance(spec, ImageSource) else runtime_source(spec)
    return source.tag(_base_identity(base_image, details), offline)


def wheelhouse(spec: ImageSource, report: Report) -> Path:
    """Every wheel requirements.txt needs, fetched on the host once per requirements hash: `pip wheel`, so a
    package published only as a source distribution (seldon-core's Flask-OpenTracing 1.1.0) is built into
    a wheel here, where the index is reachable, and the image installs wheels only."""
    folder = cache_root() / "wheelhouses" / f"{spec.name}-{requirements_key(spec.requirements_file)}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    with cache_lock(folder):
        if marker.exists():  # another process fetched it meanwhile
            return folder
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        report(spec.name, "downloading wheels for the offline build")
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-r",
                                 str(spec.requirements_file), "-w", str(partial)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            lines = [line for line in result.stderr.splitlines() if not any(noise in line for noise in NOISE)]
            raise BenchError(f"pip wheel for {spec.name} failed: {' | '.join(lines[-3:])}",
                             hint="the wheelhouse is built on the host, which needs the package index")
        (partial / ".complete").write_text(str(time.time()))
        shutil.rmtree(folder, ignore_errors=True)  # an older, incomplete attempt
        os.replace(partial, folder)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A loopback HTTP server over a folder, for pip's --find-links during `docker build`."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _metadata_file(tag: str) -> Path:
    return cache_root() / "images" / (tag.replace("/", "_").replace(":", "_") + ".json")


def _size_mb(tag: str) -> float:
    details = inspect("image", tag)
    return round(float(details["Size"]) / 2**20, 1) if details else 0.0


def ensure_image(runtime: RuntimeSpec | ImageSource, base_image: str, offline: bool, log_path: Path,
                 report: Report = lambda _r, _s: None) -> ImageInfo:
    """The runtime's (or another source's) image, built now or reused; build output goes to log_path."""
    spec = runtime if isinstance(runtime, ImageSource) else runtime_source(runtime)
    base = inspect("image", base_image)
    if base is None and offline:
        raise BenchError(f"base image {base_image} is not present and an offline build cannot pull it",
                         hint="build one with scripts/base-image.sh, or pass --base-image")
    tag = spec.tag(_base_identity(base_image, base), offline)
    with cache_lock(_metadata_file(tag)):  # two processes never build one tag at once
        return _ensure_tag(spec, tag, base_image, offline, log_path, report)


def _ensure_tag(spec: ImageSource, tag: str, base_image: str, offline: bool, log_path: Path,
                report: Report) -> ImageInfo:
    meta_file = _metadata_file(tag)
    if inspect("image", tag) is not None:
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        report(spec.name, f"cached ({tag})")
        return ImageInfo(spec.name, tag, base_image, offline, meta.get("build_s"), _size_mb(tag), False)
    # no --label: the legacy builder applies it before the first step, so a per-runtime label would defeat
    # the layer cache between runtime folders that share a Dockerfile (a copied folder, a test variant)
    build_args = ["--build-arg", f"BASE_IMAGE={base_image}"]
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _wheel_source(spec, offline, report) as pip_args, spec.context() as context:
        build_args += ["--build-arg", f"PIP_INSTALL_ARGS={pip_args}"]
        if offline:
            build_args += ["--network", "host"]  # to reach the loopback wheel server
        report(spec.name, f"building {tag}")
        with log_path.open("w") as log:
            result = subprocess.run([docker_path(), "build", *build_args, "-t", tag, "-f",
                                     str(context / spec.files[0][0]), str(context)],
                                    stdout=log, stderr=subprocess.STDOUT, text=True, check=False,
                                    env=docker_environment())
    if result.returncode != 0:
        tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-4:])
        raise BenchError(f"building the {spec.name} image failed: {tail}", hint=f"full log: {log_path}")
    info = ImageInfo(spec.name, tag, base_image, offline, round(time.monotonic() - started, 1), _size_mb(tag), True)
    meta_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = meta_file.with_name(f"{meta_file.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(info)))
    os.replace(temporary, meta_file)
    report(spec.name, f"built in {info.build_s:.0f} s, {info.size_mb:.0f} MB")
    return info


def build_images(specs: Sequence[RuntimeSpec | ImageSource], base_image: str, offline: bool, log_dir: Path,
                 events: EventHook[Status], parallel: int = 2) -> dict[str, ImageInfo | BenchError]:
    """Build (or reuse) several images at once, each image's progress a Status event. A failed build is
    returned in place of its image, not raised, so the others still finish; logs are log_dir/<name>.log."""
    report = report_to(events)

    def build(spec: RuntimeSpec | ImageSource) -> tuple[str, ImageInfo | BenchError]:
        try:
            return spec.name, ensure_image(spec, base_image, offline, log_dir / f"{spec.name}.log", report)
        except BenchError as exc:
            return spec.name, exc

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return dict(pool.map(build, specs))


@contextmanager
def _wheel_source(spec: ImageSource, offline: bool, report: Report) -> Iterator[str]:
    if not offline:
        yield ""
        return
    with serve_folder(wheelhouse(spec, report)) as url:
        yield f"--no-index --find-links {url}"


def remove_image(tag: str) -> None:
    docker("image", "rm", "-f", tag, check=False)
