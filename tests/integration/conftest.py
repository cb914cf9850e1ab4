"""Integration fixtures: the reference models and the runtime environments, built once per session; and the
`integration` mark on every test in this folder, so `-m "not integration"` leaves out a module that forgot its
own pytestmark (pytest reads no pytestmark in a conftest: the collection hook is where a folder marks its
tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import available_runtimes, load_runtime
from bench.models.catalog import get_spec
from bench.models.registry import LocalModel, resolve
from bench.provision.envs import require_env

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def models() -> dict[str, LocalModel]:
    return {name: resolve(get_spec(name)) for name in ("iris-logreg", "digits-rf", "digits-mlp", "digits-cnn")}


@pytest.fixture(scope="session")
def runtime_envs() -> None:
    for name in available_runtimes():
        require_env(load_runtime(name))
