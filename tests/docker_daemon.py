"""The Docker tests' precondition, shared by every module that starts containers."""

from __future__ import annotations

import os

import pytest

from bench.provision.containers import daemon_problem


def require_docker(extra_problem: str | None = None) -> None:
    """Skip without a Docker daemon (or with `extra_problem`), or fail when SERVEBENCH_REQUIRE_DOCKER is
    set, as CI sets it: there a missing daemon is a broken machine, not a reason to skip."""
    problem = daemon_problem() or extra_problem
    if problem is not None:
        if os.environ.get("SERVEBENCH_REQUIRE_DOCKER"):
            pytest.fail(f"SERVEBENCH_REQUIRE_DOCKER is set but {problem}")
        pytest.skip(problem)
