"""The environment fingerprint of a run: machine, software and revision, as a typed record."""

from __future__ import annotations

import os
import platform
import re
import secrets
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.config import project_root
from bench.results.schema import Environment

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


def environment_fingerprint(runtime_packages: dict[str, dict[str, str]]) -> Environment:
    """What a comparison between two runs must know: machine, software, revision."""
    versions: dict[str, str | None] = {}
    for name in HARNESS_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return Environment(
        host=socket.gethostname(), cpu_model=cpu_model(), cores=os.cpu_count(),
        usable_cpus=tuple(sorted(os.sched_getaffinity(0))),
        memory_gb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        kernel=platform.release(), python=platform.python_version(), packages=versions,
        runtime_packages=runtime_packages, git_sha=git_revision(),
    )


