"""Environment cache keys follow requirements.txt content; an environment without its ready marker is not used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from env_runtimes import runtime_folder

from bench.config import RuntimeSpec, env_cache_dir, load_runtime
from bench.errors import BenchError
from bench.events import EventHook, Status
from bench.provision.envs import READY_MARKER, build_envs, env_key, env_path, load_env

REQUIREMENTS = "numpy==2.3.4\nscikit-learn==1.9.1\n"


@pytest.fixture(autouse=True)
def env_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("SERVEBENCH_ENV_CACHE", str(cache))
    return cache


def _runtime(root: Path, requirements: str | None = REQUIREMENTS, name: str = "my-runtime") -> RuntimeSpec:
    return runtime_folder(root, requirements, name)


def _mark_ready(spec: RuntimeSpec, **meta: object) -> Path:
    path = env_path(spec)
    (path / "bin").mkdir(parents=True)
    record = {"key": env_key(spec), "build_s": 12.5, "size_mb": 150.0, "packages": {"numpy": "2.3.4"}, **meta}
    (path / READY_MARKER).write_text(json.dumps(record))
    return path


def test_env_key_is_stable_for_unchanged_requirements(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    key = env_key(spec)
    assert len(key) == 16 and int(key, 16) >= 0
    assert env_key(spec) == key
    assert env_key(_runtime(tmp_path)) == key  # reloaded spec, same file
    (spec.requirements_file).write_text(REQUIREMENTS)  # rewritten with the same content: new mtime
    assert env_key(spec) == key


def test_env_key_depends_on_content_not_on_the_folder(tmp_path: Path) -> None:
    first = _runtime(tmp_path / "a")
    second = _runtime(tmp_path / "b", name="other-runtime")
    assert env_key(first) == env_key(second)
    assert env_path(first) != env_path(second)  # the name keeps their environments apart


@pytest.mark.parametrize(
    "changed",
    ["numpy==2.3.5\nscikit-learn==1.9.1\n", REQUIREMENTS + "requests==2.32.5\n", REQUIREMENTS.rstrip("\n"),
     "scikit-learn==1.9.1\nnumpy==2.3.4\n", ""],
    ids=["pin bumped", "package added", "trailing newline", "reordered", "emptied"],
)
def test_env_key_changes_when_requirements_change(tmp_path: Path, changed: str) -> None:
    spec = _runtime(tmp_path)
    before = env_key(spec)
    spec.requirements_file.write_text(changed)
    after = env_key(spec)
    assert after != before
    spec.requirements_file.write_text(REQUIREMENTS)
    assert env_key(spec) == before


def test_env_key_without_requirements_names_the_folder(tmp_path: Path) -> None:
    spec = _runtime(tmp_path, requirements=None)
    with pytest.raises(BenchError, match=r"no requirements\.txt") as caught:
        env_key(spec)
    assert str(spec.folder) in caught.value.message


def test_env_path_is_in_the_cache_and_named_by_runtime_and_key(tmp_path: Path, env_cache: Path) -> None:
    spec = _runtime(tmp_path)
    assert env_cache_dir() == env_cache.resolve()
    assert env_path(spec) == env_cache.resolve() / f"my-runtime-{env_key(spec)}"


def test_load_env_is_none_when_nothing_was_built(tmp_path: Path, env_cache: Path) -> None:
    spec = _runtime(tmp_path)
    assert load_env(spec) is None
    assert not env_cache.exists()  # looking does not create anything


def test_load_env_is_none_for_a_folder_without_the_ready_marker(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    path = env_path(spec)
    (path / "bin").mkdir(parents=True)  # an interrupted build: venv created, install never finished
    (path / "bin" / "python").write_text("")
    assert load_env(spec) is None


def test_load_env_returns_a_completely_built_env(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    path = _mark_ready(spec)
    env = load_env(spec)
    assert env is not None
    assert env.runtime == "my-runtime"
    assert env.path == path
    assert env.key == env_key(spec)
    assert (env.build_s, env.size_mb, env.packages) == (12.5, 150.0, {"numpy": "2.3.4"})
    assert env.python == path / "bin" / "python"


def test_a_built_env_is_not_reused_after_requirements_change(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    _mark_ready(spec)
    assert load_env(spec) is not None
    spec.requirements_file.write_text(REQUIREMENTS + "requests==2.32.5\n")
    assert load_env(spec) is None
    spec.requirements_file.write_text(REQUIREMENTS)
    assert load_env(spec) is not None  # the old environment is still valid for the old pins


def test_shipped_runtimes_have_distinct_env_paths() -> None:
    specs = [load_runtime(name) for name in ("bentoml", "fastapi", "mlflow", "mlserver")]
    paths = {env_path(spec) for spec in specs}
    assert len(paths) == len(specs)


def test_build_envs_reports_each_runtime_to_every_listener(tmp_path: Path) -> None:
    cached, broken = _runtime(tmp_path), _runtime(tmp_path, requirements=None, name="no-pins")
    _mark_ready(cached)
    seen: list[Status] = []
    also: list[Status] = []
    events = EventHook[Status](seen.append)
    events.add_listener(also.append)
    results = build_envs([cached, broken], events, parallel=2)
    assert results["my-runtime"][0] == load_env(cached) and results["my-runtime"][1] is False
    assert results["no-pins"][0] is None and "no requirements.txt" in (results["no-pins"][2] or "")
    assert Status("my-runtime", f"cached ({env_path(cached).name})") in seen
    assert Status("no-pins", "failed") in seen
    assert sorted(also, key=repr) == sorted(seen, key=repr)


def test_a_removed_listener_hears_nothing_more() -> None:
    seen: list[Status] = []
    events = EventHook[Status]()
    listener = events.add_listener(seen.append)
    events.fire(Status("a", "one"))
    events.remove_listener(listener)
    events.fire(Status("a", "two"))
    assert seen == [Status("a", "one")]
    with pytest.raises(ValueError):
        events.remove_listener(listener)
