"""A runtime's environment for a team's model: the plan from requirement lines and pins (pure), and how
model_env applies it (the runtime's own env, a derived env cached by key, or unsupported with a reason)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from env_runtimes import runtime_folder

from bench.config import RuntimeSpec, env_cache_dir, load_runtime
from bench.errors import BenchError
from bench.provision import model_envs
from bench.provision.envs import (
    READY_MARKER,
    RuntimeEnv,
    build_log,
    env_key,
    env_path,
    load_env_at,
    pinned_requirements,
)
from bench.provision.model_envs import (
    Difference,
    EnvPlan,
    ModelEnv,
    PlanKind,
    Unsupported,
    decisive_packages,
    model_env,
    model_env_key,
    model_env_path,
    parse_requirements,
    plan_model_env,
    resolution_failure,
)

PINS = """\
# Pinned environment of a test runtime
cloudpickle==3.1.3
mlflow-skinny==3.17.0
numpy==2.4.6
pandas==3.1.1
scikit-learn==1.9.1
scipy==1.17.1
torch==2.13.0
"""
# What MLflow 3.17 writes for a scikit-learn model logged here (skops is its default serialisation).
LOGGED = ["mlflow==3.17.0", "cloudpickle==3.1.3", "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1",
          "scipy==1.17.1", "skops==0.16.0"]
SKLEARN = ["python_function", "sklearn"]
PIP_CONFLICT = """\
Collecting Flask-cors<4.0.0 (from seldon-core==1.18.2)
INFO: pip is looking at multiple versions of seldon-core to determine which version is compatible.
ERROR: Cannot install numpy==2.4.6 and seldon-core==1.18.2 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested numpy==2.4.6
    seldon-core 1.18.2 depends on numpy<2.0.0
    The user requested (constraint) numpy==2.4.6

To fix this you could try to:
1. loosen the range of package versions you've specified

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""
PIP_NO_VERSION = """\
ERROR: Could not find a version that satisfies the requirement skops==0.0.7 (from versions: 0.1, 0.16.0)
ERROR: No matching distribution found for skops==0.0.7
"""
PIP_OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None)) after connection broken by 'NewConnectionError(...)': /simple/skops/
ERROR: Could not find a version that satisfies the requirement skops==0.16.0 (from versions: none)
ERROR: No matching distribution found for skops==0.16.0
"""


@pytest.fixture(autouse=True)
def env_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("SERVEBENCH_ENV_CACHE", str(cache))
    return cache


def _runtime(root: Path, requirements: str | None = PINS, name: str = "my-runtime") -> RuntimeSpec:
    return runtime_folder(root, requirements, name)


def _plan(spec: RuntimeSpec, requirements: list[str], flavours: list[str] = SKLEARN, strict: bool = False,
          loads_model_artifact: bool = True) -> EnvPlan:
    return plan_model_env(spec.name, pinned_requirements(spec), requirements, flavours, strict=strict,
                          loads_model_artifact=loads_model_artifact)


def _mark_ready(path: Path, key: str) -> None:
    (path / "bin").mkdir(parents=True)
    record = {"key": key, "build_s": 12.5, "size_mb": 150.0, "packages": {"numpy": "2.4.6"}}
    (path / READY_MARKER).write_text(json.dumps(record))


# ---- parsing ------------------------------------------------------------------------------------

def test_comments_blank_lines_and_pip_options_are_skipped() -> None:
    lines = ["# written by MLflow", "", "   ", "-r base.txt", "--index-url https://example.org/simple",
             "-c constraints.txt", "numpy==2.4.6  # the training env's", "Scikit_Learn == 1.9.1",
             "pandas>=2,\\", "<4"]
    parsed = parse_requirements(lines)
    assert [model_envs.requirement_text(r) for r in parsed] == ["numpy==2.4.6", "scikit-learn==1.9.1",
                                                               "pandas<4,>=2"]


def test_markers_are_evaluated_for_this_interpreter() -> None:
    parsed = parse_requirements(['pywin32==306; sys_platform == "win32"', 'tomli==2.0.1; python_version < "3"',
                                 'typing-extensions==4.12.2; python_version >= "3"'])
    assert [r.name for r in parsed] == ["typing-extensions"]
    assert model_envs.requirement_text(parsed[0]) == "typing-extensions==4.12.2"  # the marker is not carried


@pytest.mark.parametrize("line", ["numpy===", "scikit learn==1.0", "numpy==2.4.6; os_name === 'posix'",
                                  "==1.0"])
def test_a_bad_requirement_line_is_a_clear_error(line: str) -> None:
    with pytest.raises(BenchError, match="is not a valid requirement") as caught:
        parse_requirements(["numpy==2.4.6", line])
    assert line.strip() in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.hint and "requirements.txt" in caught.value.hint


def test_decisive_packages_follow_the_flavours() -> None:
    assert decisive_packages(["python_function"]) == frozenset()
    assert decisive_packages(SKLEARN) == {"scikit-learn"}
    assert decisive_packages(["python_function", "pytorch"]) == {"torch"}
    assert decisive_packages(["keras"]) == {"keras", "tensorflow"}
    assert decisive_packages(["xgboost", "lightgbm", "onnx"]) == {"xgboost", "lightgbm", "onnx"}
    assert decisive_packages(["sentence_transformers"]) == {"sentence-transformers"}  # any other: its name


# ---- the plan -----------------------------------------------------------------------------------

def test_requirements_met_by_the_pins_are_satisfied(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path), [line for line in LOGGED if not line.startswith("skops")])
    assert plan == EnvPlan("my-runtime")
    assert plan.kind is PlanKind.SATISFIED and plan.reason is None


def test_looser_specifiers_are_met_by_the_pins(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path), ["numpy>=2,<3", "scikit-learn~=1.9", "pandas", "torch==2.13.*"])
    assert plan.kind is PlanKind.SATISFIED


def test_unpinned_requirements_are_missing_and_derive_an_env(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path), [*LOGGED, "XGBoost==3.1.0", "skops==0.16.0"])
    assert plan.kind is PlanKind.DERIVED
    assert plan.missing == ("skops==0.16.0", "xgboost==3.1.0")  # canonical, sorted, once
    assert plan.differences == () and plan.conflicts == ()


def test_extras_of_a_pinned_package_are_installed(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path), ["pandas[parquet]==3.1.1"])
    assert plan.missing == ("pandas[parquet]==3.1.1",)  # the runtime's lock may not hold what the extra adds


def test_a_decisive_conflict_is_unsupported_with_one_line(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path, name="mlserver"), [*LOGGED[:4], "scikit-learn==1.5.2"])
    assert plan.kind is PlanKind.UNSUPPORTED
    assert plan.reason == "mlserver needs scikit-learn==1.9.1, the model needs scikit-learn==1.5.2"
    two = _plan(_runtime(tmp_path, name="mlserver"), ["scikit-learn==1.5.2", "torch==2.1.0"],
                ["python_function", "sklearn", "pytorch"])
    assert two.reason == ("mlserver needs scikit-learn==1.9.1 and torch==2.13.0, "
                          "the model needs scikit-learn==1.5.2 and torch==2.1.0")


def test_a_difference_in_another_package_is_recorded_not_silent(tmp_path: Path) -> None:
    seldon = _runtime(tmp_path, PINS.replace("numpy==2.4.6", "numpy==1.26.4"), name="seldon")
    plan = _plan(seldon, LOGGED[:5])
    assert plan.kind is PlanKind.SATISFIED  # the runtime's own environment, numpy 1.26.4; parity judges
    assert plan.differences == (Difference("numpy", "1.26.4", "==2.4.6"),)
    assert str(plan.differences[0]) == "numpy==1.26.4 (the model records numpy==2.4.6)"
    assert plan.reason is None


def test_the_flavour_decides_what_is_decisive(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    as_pyfunc = _plan(spec, ["scikit-learn==1.5.2"], ["python_function"])
    assert as_pyfunc.kind is PlanKind.SATISFIED and as_pyfunc.differences[0].package == "scikit-learn"
    torch_model = _plan(spec, ["torch==2.1.0", "numpy==1.26.4"], ["python_function", "pytorch"])
    assert torch_model.reason == "my-runtime needs torch==2.13.0, the model needs torch==2.1.0"
    assert [d.package for d in torch_model.differences] == ["numpy"]


def test_strict_makes_every_conflict_unsupported(tmp_path: Path) -> None:
    spec = _runtime(tmp_path, PINS.replace("numpy==2.4.6", "numpy==1.26.4"), name="seldon")
    plan = _plan(spec, LOGGED, strict=True)
    assert plan.kind is PlanKind.UNSUPPORTED
    assert plan.reason == "seldon needs numpy==1.26.4, the model needs numpy==2.4.6"
    assert plan.missing == ("skops==0.16.0",)  # still known, not what decides


def test_mlflow_is_met_by_mlflow_skinny_or_mlflow(tmp_path: Path) -> None:
    skinny = _plan(_runtime(tmp_path), ["mlflow==3.17.0"])
    assert skinny.kind is PlanKind.SATISFIED and skinny.differences == ()
    full = _runtime(tmp_path, PINS + "mlflow==3.17.0\n", name="full")
    assert _plan(full, ["mlflow==3.17.0", "mlflow-skinny==3.17.0"]).kind is PlanKind.SATISFIED
    neither = _runtime(tmp_path, "numpy==2.4.6\n", name="bare")
    assert _plan(neither, ["mlflow==3.17.0"]).missing == ("mlflow==3.17.0",)


def test_mlflow_is_decisive_only_across_major_versions(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    minor = _plan(spec, ["mlflow==3.10.0"])
    assert minor.kind is PlanKind.SATISFIED
    assert minor.differences == (Difference("mlflow", "3.17.0", "==3.10.0", "mlflow-skinny"),)
    assert str(minor.differences[0]) == "mlflow-skinny==3.17.0 (the model records mlflow==3.10.0)"
    major = _plan(spec, ["mlflow==2.9.2"])
    assert major.reason == "my-runtime needs mlflow-skinny==3.17.0, the model needs mlflow==2.9.2"
    assert _plan(spec, ["mlflow<3"]).kind is PlanKind.UNSUPPORTED
    assert _plan(spec, ["mlflow>=3.1,<3.5"]).kind is PlanKind.SATISFIED  # other 3.x: a difference
    assert _plan(spec, ["mlflow>3.17.0,<4"]).kind is PlanKind.SATISFIED


def test_a_direct_reference_to_a_pinned_package_is_a_conflict(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path), ["scikit-learn @ https://example.org/scikit_learn-1.9.1-py3-none-any.whl"])
    assert plan.reason == ("my-runtime needs scikit-learn==1.9.1, the model needs "
                           "scikit-learn @ https://example.org/scikit_learn-1.9.1-py3-none-any.whl")


def test_a_runtime_that_loads_no_model_artifact_ignores_the_requirements(tmp_path: Path) -> None:
    plan = _plan(_runtime(tmp_path, "numpy==2.4.6\n", name="onnx"), ["scikit-learn==0.20.0", "skops==0.16.0"],
                 loads_model_artifact=False)
    assert plan == EnvPlan("onnx", applicable=False)
    assert plan.kind is PlanKind.NOT_APPLICABLE and plan.reason is None


def test_the_models_python_is_compared_by_minor_version(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)

    def python(model: str, strict: bool = False) -> EnvPlan:
        return plan_model_env(spec.name, pinned_requirements(spec), LOGGED[:5], SKLEARN, strict=strict,
                              model_python=model, runtime_python="3.11.7")

    assert python("3.11.2").differences == ()
    assert python("3.12.1").differences == (Difference("python", "3.11.7", "==3.12.1"),)
    assert python("3.12.1", strict=True).reason == "my-runtime needs python==3.11.7, the model needs python==3.12.1"


@pytest.mark.parametrize("runtime", ["bentoml", "fastapi", "kserve", "mlflow", "mlserver", "rayserve", "seldon",
                                     "torchserve"])
def test_the_reference_models_keep_each_runtimes_own_environment(runtime: str) -> None:
    spec = load_runtime(runtime)
    for requirements, flavours in ((["mlflow==3.17.0", "numpy==2.4.6", "cloudpickle==3.1.3",
                                     "scikit-learn==1.9.1"], SKLEARN),
                                   (["mlflow==3.17.0", "numpy==2.4.6", "cloudpickle==3.1.3", "torch==2.13.0"],
                                    ["python_function", "pytorch"])):
        plan = _plan(spec, requirements, flavours)
        assert plan.kind is PlanKind.SATISFIED, plan
        assert all(d.package == "numpy" for d in plan.differences)  # seldon's numpy 1.26.4 only
    assert _plan(load_runtime("onnx"), ["mlflow==3.17.0"], loads_model_artifact=False).kind is \
        PlanKind.NOT_APPLICABLE


# ---- pip's reason -------------------------------------------------------------------------------

def test_pips_resolution_failure_becomes_one_line() -> None:
    assert resolution_failure(PIP_CONFLICT) == ("Cannot install numpy==2.4.6 and seldon-core==1.18.2 "
                                                "(seldon-core 1.18.2 depends on numpy<2.0.0)")
    assert resolution_failure(PIP_NO_VERSION) == "No matching distribution found for skops==0.0.7"
    clash = PIP_CONFLICT.replace("    seldon-core 1.18.2 depends on numpy<2.0.0\n", "")
    assert resolution_failure(clash) == ("Cannot install numpy==2.4.6 and seldon-core==1.18.2 (The user requested "
                                         "numpy==2.4.6; The user requested (constraint) numpy==2.4.6)")


@pytest.mark.parametrize("output", [PIP_OFFLINE, "ERROR: Failed building wheel for lxml\n", "OSError: No space\n",
                                    ""])
def test_other_pip_failures_are_not_the_pairs_fault(output: str) -> None:
    assert resolution_failure(output) is None


# ---- applying the plan --------------------------------------------------------------------------

@pytest.fixture
def no_builds(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Fake builds: record pip's arguments and mark the env ready, as install_env does when pip succeeds."""
    builds: list[list[str]] = []

    def fake_install(runtime: str, path: Path, key: str, pip_args: list[str], report: object,
                     base: RuntimeEnv | None = None, **meta: object) -> RuntimeEnv:
        builds.append(pip_args)
        _mark_ready(path, key)
        env = load_env_at(runtime, path)
        assert env is not None
        return env

    monkeypatch.setattr(model_envs, "install_env", fake_install)
    monkeypatch.setattr("bench.provision.envs._build_env", lambda *_a: pytest.fail("the runtime's env was rebuilt"))
    return builds


def test_satisfied_uses_the_runtimes_own_env_without_any_build(tmp_path: Path, no_builds: list[list[str]]) -> None:
    spec = _runtime(tmp_path)
    _mark_ready(env_path(spec), env_key(spec))
    result = model_env(spec, LOGGED[:5], SKLEARN)
    assert isinstance(result, ModelEnv)
    assert result.env.path == env_path(spec) and not result.built_now and not result.derived
    assert no_builds == []
    assert list(env_cache_dir().glob("*-model-*")) == []


def test_missing_builds_a_derived_env_once(tmp_path: Path, no_builds: list[list[str]]) -> None:
    spec = _runtime(tmp_path)
    _mark_ready(env_path(spec), env_key(spec))  # the runtime's own environment, which the derived one extends
    first = model_env(spec, LOGGED, SKLEARN)
    assert isinstance(first, ModelEnv) and first.built_now and first.derived
    assert first.env.path == env_cache_dir() / f"my-runtime-model-{model_env_key(spec, ['skops==0.16.0'])}"
    requirements = str(spec.requirements_file)
    assert no_builds == [["-c", requirements, "skops==0.16.0"]]  # only what is missing, the pins as constraints
    again = model_env(spec, list(reversed(LOGGED)), ["sklearn", "python_function"])
    assert isinstance(again, ModelEnv) and not again.built_now and again.env == first.env
    assert len(no_builds) == 1


def test_the_derived_key_follows_both_requirement_sets(tmp_path: Path) -> None:
    spec = _runtime(tmp_path)
    key = model_env_key(spec, ["skops==0.16.0", "xgboost==3.1.0"])
    assert key == model_env_key(spec, ["xgboost==3.1.0", "skops==0.16.0"])
    assert key != model_env_key(spec, ["skops==0.16.0"])
    assert key != env_key(spec)
    spec.requirements_file.write_text(PINS + "requests==2.32.5\n")
    assert model_env_key(spec, ["skops==0.16.0", "xgboost==3.1.0"]) != key
    assert model_env_path(spec, ["skops==0.16.0"]).name.startswith("my-runtime-model-")


def test_a_decisive_conflict_returns_unsupported_without_building(tmp_path: Path,
                                                                  no_builds: list[list[str]]) -> None:
    result = model_env(_runtime(tmp_path, name="mlserver"), ["scikit-learn==1.5.2", "numpy==2.3.0"], SKLEARN)
    assert result == Unsupported("mlserver", "mlserver needs scikit-learn==1.9.1, the model needs scikit-learn==1.5.2",
                                 (Difference("numpy", "2.4.6", "==2.3.0"),))
    assert no_builds == []


def _failing_pip(monkeypatch: pytest.MonkeyPatch, output: str) -> list[Path]:
    attempts: list[Path] = []

    def fail(runtime: str, path: Path, key: str, pip_args: list[str], report: object, **meta: object) -> RuntimeEnv:
        attempts.append(path)
        (path / "bin").mkdir(parents=True, exist_ok=True)  # a half-built venv
        build_log(path).write_text(output)
        raise BenchError(f"building the {runtime} environment failed")

    monkeypatch.setattr(model_envs, "install_env", fail)
    # the runtime's own environment is not what these tests are about: building it for real took a minute each
    base = RuntimeEnv("r", Path("/nonexistent/base"), "base", 0.0, 0.0, {})
    monkeypatch.setattr(model_envs, "build_env", lambda *_a, **_k: (base, False))
    return attempts


def test_pips_resolution_failure_is_unsupported_and_remembered(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _failing_pip(monkeypatch, PIP_CONFLICT)
    spec = _runtime(tmp_path, name="fastapi")
    result = model_env(spec, ["seldon-core==1.18.2"], ["python_function"])
    assert isinstance(result, Unsupported)
    assert result.reason == ("fastapi's pins and the model's seldon-core==1.18.2 do not resolve: Cannot install "
                             "numpy==2.4.6 and seldon-core==1.18.2 (seldon-core 1.18.2 depends on numpy<2.0.0)")
    assert not attempts[0].exists()  # the half-built venv is gone, its log stays
    assert build_log(attempts[0]).is_file()
    assert model_env(spec, ["seldon-core==1.18.2"], ["python_function"]) == result
    assert len(attempts) == 1  # known: pip is not asked again
    model_env(spec, ["seldon-core==1.18.2"], ["python_function"], force=True)
    assert len(attempts) == 2


def test_other_build_failures_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _failing_pip(monkeypatch, PIP_OFFLINE)
    spec = _runtime(tmp_path)
    with pytest.raises(BenchError, match="environment failed"):
        model_env(spec, LOGGED, SKLEARN)
    with pytest.raises(BenchError):
        model_env(spec, LOGGED, SKLEARN)
    assert len(attempts) == 2  # nothing remembered: the network may be back


def test_a_runtime_without_requirements_is_a_bench_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"no requirements\.txt"):
        model_env(_runtime(tmp_path, requirements=None), LOGGED, SKLEARN)


def test_a_bad_model_requirement_is_a_bench_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="'numpy=='"):
        model_env(_runtime(tmp_path), ["numpy=="], SKLEARN)


def test_a_local_build_label_is_met_by_the_same_release() -> None:
    """MLflow records torch==2.13.0+cpu (the CPU build it was trained with); the runtime's pin torch==2.13.0
    installs that build here. Another release is still a conflict."""
    pins = {"torch": "2.13.0", "numpy": "2.4.6"}
    same = plan_model_env("r", pins, ["torch==2.13.0+cpu"], ["python_function", "pytorch"])
    assert same.kind is PlanKind.SATISFIED and same.differences == ()
    other = plan_model_env("r", pins, ["torch==2.12.0+cpu"], ["python_function", "pytorch"])
    assert other.kind is PlanKind.UNSUPPORTED and other.reason is not None and "torch==2.12.0+cpu" in other.reason
