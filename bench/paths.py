"""Where servebench keeps things: the checkout, its state, the shared caches."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding runtimes/ and scenarios/ (the package's parent), else the working dir."""
    candidate = Path(__file__).resolve().parent.parent
    if (candidate / "runtimes").is_dir():
        return candidate
    return Path.cwd()


def state_dir() -> Path:
    """Project-local, git-ignored: MLflow store, model copies. SERVEBENCH_HOME overrides."""
    return Path(os.environ.get("SERVEBENCH_HOME", project_root() / ".servebench")).resolve()


def env_cache_dir() -> Path:
    """Per-runtime virtualenvs, keyed by content hash, shared by every checkout on the machine."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "servebench" / "envs"
    return Path(os.environ.get("SERVEBENCH_ENV_CACHE", default)).resolve()


def runtimes_dir() -> Path:
    return project_root() / "runtimes"


SHARED_PREFIX = "../common/"  # how runtime.yaml's serving_code names a file of the shared code


def shared_code_dir() -> Path:
    """Serving code the runtime folders share (runtime.yaml's {shared_dir}); an image copies it beside the
    runtime's own code."""
    return runtimes_dir() / "common"
