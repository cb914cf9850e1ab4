"""The Docker CLI, as the harness uses it: one place that runs `docker`, and turns 'no daemon' into a
clear error instead of a stack of failed commands."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from bench.errors import BenchError
from bench.processes import inherited_environment

DOCKER_HINT = "install docker.io and start dockerd (see `bench doctor` and the Docker section of docs/guide.md)"


def docker_path() -> str:
    path = shutil.which("docker")
    if path is None:
        raise BenchError("the docker command is not installed", hint=DOCKER_HINT)
    return path


DOCKER_PREFIXES = ("DOCKER_", "XDG_")  # the CLI's own settings (DOCKER_HOST, DOCKER_CONFIG, a rootless socket)


def docker_environment() -> dict[str, str]:
    """What the docker CLI gets of the harness's environment: the servers' allow-list and its own settings;
    the harness's credentials (MLFLOW_*, cloud tokens) stay with the harness."""
    return inherited_environment(DOCKER_PREFIXES)


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; a failure raises BenchError with the last lines docker printed."""
    result = subprocess.run([docker_path(), *args], capture_output=True, text=True, timeout=timeout, check=False,
                            env=docker_environment())
    if check and result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-5:])
        raise BenchError(f"docker {args[0]} failed: {tail}")
    return result


def daemon_problem() -> str | None:
    """None when a Docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        result = subprocess.run([docker_path(), "version", "--format", "{{.Server.Version}}"], capture_output=True,
                                text=True, timeout=15, check=False, env=docker_environment())
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer within 15 s"
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines()
        return lines[-1] if lines else "the Docker daemon is not reachable"
    return None


def require_daemon() -> None:
    problem = daemon_problem()
    if problem is not None:
        raise BenchError(f"no Docker daemon: {problem}", hint=DOCKER_HINT)


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """`docker KIND inspect NAME` as a dict, or None when it does not exist."""
    result = docker(kind, "inspect", name, check=False, timeout=30)
    if result.returncode != 0:
        return None
    items = json.loads(result.stdout)
    return items[0] if items else None


def has_bridge_network() -> bool:
    """Daemons started with --bridge=none (as on this project's machines) have no default bridge."""
    return inspect("network", "bridge") is not None
