"""A real derived environment: the fastapi runtime's pins plus a package a team's model records (skops,
which MLflow 3.17 saves scikit-learn models with) and fastapi does not pin; built once, then reused.
And the two ways a pair is unsupported: a decisive pin outside the model's specifier, and pip's refusal."""

from __future__ import annotations

import subprocess

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from bench.config import env_cache_dir, load_runtime
from bench.provision.envs import pinned_requirements
from bench.provision.model_envs import ModelEnv, Unsupported, model_env

pytestmark = pytest.mark.integration

SKLEARN = ["python_function", "sklearn"]
EXTRA = "skops==0.16.0"


def test_a_derived_env_holds_the_runtimes_pins_and_the_models_package() -> None:
    spec = load_runtime("fastapi")
    pins = pinned_requirements(spec)
    assert "skops" not in pins  # else this test proves nothing
    requirements = [f"mlflow=={pins['mlflow-skinny']}", f"numpy=={pins['numpy']}",
                    f"scikit-learn=={pins['scikit-learn']}", EXTRA]
    first = model_env(spec, requirements, SKLEARN, lambda name, status: print(f"{name}: {status}"))
    assert isinstance(first, ModelEnv) and first.derived, first
    assert first.env.path.parent == env_cache_dir() and first.env.path.name.startswith("fastapi-model-")
    print(f"derived env {first.env.path.name}: built now {first.built_now}, build {first.env.build_s} s, "
          f"{first.env.size_mb} MB")
    installed: dict[str, str] = {canonicalize_name(name): version for name, version in first.env.packages.items()}
    changed = {name: installed.get(canonicalize_name(name)) for name, version in pins.items()
               if installed.get(canonicalize_name(name), "absent") not in SpecifierSet(f"=={version}")}
    assert changed == {}  # every pin kept (==2.13.0 admits the local build 2.13.0+cpu)
    assert installed["skops"] == "0.16.0"
    versions = subprocess.run([str(first.env.python), "-c", "import sklearn, skops; "
                               "print(sklearn.__version__, skops.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == [pins["scikit-learn"], "0.16.0"]

    again = model_env(spec, list(reversed(requirements)), SKLEARN)
    assert isinstance(again, ModelEnv) and not again.built_now and again.env == first.env


def test_a_decisive_pin_outside_the_models_specifier_is_unsupported() -> None:
    spec = load_runtime("fastapi")
    result = model_env(spec, ["scikit-learn==0.20.0", EXTRA], SKLEARN)
    assert isinstance(result, Unsupported), result
    assert result.reason == f"fastapi needs scikit-learn=={pinned_requirements(spec)['scikit-learn']}, " \
                            "the model needs scikit-learn==0.20.0"


def test_pips_refusal_is_unsupported_with_its_reason() -> None:
    """seldon-core 1.18.2 needs numpy<2, fastapi pins numpy 2.x: pip's resolver says so, in one line."""
    result = model_env(load_runtime("fastapi"), ["seldon-core==1.18.2"], ["python_function"], force=True)
    assert isinstance(result, Unsupported), result
    print(result.reason)
    assert "\n" not in result.reason
    assert "seldon-core" in result.reason and "numpy<2" in result.reason
