"""Integration fixtures: the reference models and the runtime environments, built once per session. (Each
integration module marks itself `pytestmark = pytest.mark.integration`: pytest reads no pytestmark here.)"""

from __future__ import annotations

import pytest

from bench.config import available_runtimes, load_runtime
from bench.models.catalog import get_spec
from bench.models.registry import LocalModel, resolve
from bench.provision.envs import require_env


@pytest.fixture(scope="session")
def models() -> dict[str, LocalModel]:
    return {name: resolve(get_spec(name)) for name in ("iris-logreg", "digits-rf", "digits-mlp", "digits-cnn")}


@pytest.fixture(scope="session")
def runtime_envs() -> None:
    for name in available_runtimes():
        require_env(load_runtime(name))
