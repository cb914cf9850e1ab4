"""runtimes/common/servebench_serving.py: the row check every Python runtime of servebench shares, and the
runtime.yaml fields that say which models a runtime serves and how closely."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from bench.config import load_runtime, parse_runtime_spec, runtimes_dir, shared_code_dir
from bench.measure.check import NOT_SUPPORTED, check_pair
from bench.models.catalog import get_spec
from bench.targets.local import LocalTarget


def _serving() -> ModuleType:
    path = shared_code_dir() / "servebench_serving.py"
    spec = importlib.util.spec_from_file_location("servebench_serving", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("servebench_serving", module)
    spec.loader.exec_module(module)
    return module


SERVING = _serving()


def test_good_rows_come_back_in_the_models_dtype() -> None:
    rows = SERVING.checked_rows([[1, 2.5, 3, 4], [0, 0, 0, 0.125]], 4, np.dtype("float32"))
    assert rows.dtype == np.float32 and rows.shape == (2, 4)
    np.testing.assert_array_equal(rows[0], [1, 2.5, 3, 4])


@pytest.mark.parametrize(("value", "status", "words"), [
    ([], 422, "non-empty"),
    ({"a": 1}, 422, "non-empty"),
    ([[1, 2, 3]], 422, "4 features"),
    ([[1, 2, 3, 4], [1, 2]], 422, "same number"),
    ([["a", "b", "c", "d"]], 422, "numbers only"),
    ([[True, 1, 2, 3]], 422, "numbers only"),
    ([[float("nan"), 1, 2, 3]], 422, "NaN"),
    ([[float("inf"), 1, 2, 3]], 422, "NaN"),
    ([[10**400, 1, 2, 3]], 422, "out of range"),
    ([[1.0, 2.0, 3.0, 4.0]] * 5000, 413, "at most"),
    ([[]], 422, "non-empty list of numbers"),
])
def test_bad_rows_name_the_problem_with_a_4xx(value: Any, status: int, words: str) -> None:
    with pytest.raises(SERVING.BadInput, match=words) as caught:
        SERVING.checked_rows(value, 4, np.dtype("float64"))
    assert caught.value.status == status


def test_arrays_decoded_by_a_framework_are_checked_too() -> None:
    with pytest.raises(SERVING.BadInput, match="NaN"):
        SERVING.checked_rows(np.array([[np.nan, 1.0, 2.0, 3.0]]), 4, np.dtype("float64"))
    with pytest.raises(SERVING.BadInput, match="numeric"):
        SERVING.checked_rows(np.array([["a", "b", "c", "d"]]), 4, np.dtype("float64"))
    assert SERVING.checked_rows(np.ones((3, 7)), None, np.dtype("float64")).shape == (3, 7)


def _runtime_with(tmp_path: Path, extra: str) -> Path:
    folder = tmp_path / "rt"
    folder.mkdir()
    (folder / "runtime.yaml").write_text(
        'name: rt\nprotocol: kserve-v1\ncommand: ["{python}", "-c", "pass", "{port}"]\n'
        "readiness_path: /ready\npredict_path: /predict\n" + extra)
    (folder / "requirements.txt").write_text("")
    return folder / "runtime.yaml"


def test_a_runtime_declares_the_models_it_cannot_serve(tmp_path: Path) -> None:
    spec = parse_runtime_spec(_runtime_with(tmp_path, "not_supported:\n  pytorch: no torch in its image\n"
                                                      "  digits-rf: too big\n"))
    assert spec.unsupported_reason(get_spec("digits-cnn")) == "no torch in its image"
    assert spec.unsupported_reason(get_spec("digits-rf")) == "too big"
    assert spec.unsupported_reason(get_spec("iris-logreg")) is None
    row = check_pair(LocalTarget(), spec, get_spec("digits-mlp"), tmp_path / "logs")
    assert (row.status, row.ok, row.counts_against) == (NOT_SUPPORTED, False, False)
    assert row.error == "unsupported: no torch in its image"
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_a_derived_artifact_loosens_the_tolerance_never_tightens_it(tmp_path: Path) -> None:
    spec = parse_runtime_spec(_runtime_with(tmp_path, "parity_atol: 1.0e-6\n"))
    assert spec.parity_tolerance(get_spec("iris-logreg")) == 1e-6  # the model's own is 1e-9
    assert spec.parity_tolerance(get_spec("digits-mlp")) == 1e-5  # the model's own is looser
    assert load_runtime("fastapi").parity_tolerance(get_spec("iris-logreg")) == 1e-9


def test_runtimes_sharing_code_list_it_and_find_it_through_shared_dir() -> None:
    for name in ("kserve", "seldon", "onnx", "fastapi"):
        spec = load_runtime(name)
        assert "../common/servebench_serving.py" in spec.serving_code
        assert "{shared_dir}" in spec.env["PYTHONPATH"]


def test_an_image_gets_the_shared_code_beside_the_runtimes_own() -> None:
    from bench.provision.images import runtime_source

    kserve = runtime_source(load_runtime("kserve"))
    assert kserve.folder is None  # staged: the folder alone lacks the shared file
    assert [name for name, _ in kserve.files] == ["Dockerfile", "requirements.txt", "model_server.py",
                                                  "servebench_serving.py"]
    with kserve.context() as context:
        assert (context / "servebench_serving.py").read_bytes() == (shared_code_dir() / "servebench_serving.py"
                                                                    ).read_bytes()
    assert runtime_source(load_runtime("mlflow")).folder == load_runtime("mlflow").folder  # no code of its own


def test_a_runtimes_warmup_lengthens_only_the_warmup() -> None:
    from bench.config import RunLength, Scenario
    from bench.measure.plan import plan_measurements

    steady = Scenario(name="s", loop="open", rate=50, warmup_s=5, duration_s=20)
    [planned] = plan_measurements(steady, RunLength(name="smoke", time_scale=0.2))  # 1 s warm-up, 4 s window
    longer = planned.with_warmup_at_least(5.0)
    assert (longer.warmup_s, longer.duration_s, longer.stages) == (5.0, 4.0, [(9.0, 50)])
    assert planned.with_warmup_at_least(0.5) is planned  # never shortened
    staged = Scenario(name="s", loop="open", stages=[{"duration_s": 2, "rate": 10}, {"duration_s": 2, "rate": 20}],
                      warmup_s=0)
    [ramp] = plan_measurements(staged, RunLength(name="full", time_scale=1.0, min_duration_s=1))
    assert ramp.with_warmup_at_least(3.0).stages == [(3.0, 10), (2.0, 10), (2.0, 20)]
    assert load_runtime("rayserve").warmup_s == 5.0 and load_runtime("fastapi").warmup_s == 0.0


def test_a_runtime_folder_copied_elsewhere_still_finds_the_shared_code(tmp_path: Path) -> None:
    """A team copies runtimes/fastapi to change it: its image and its serving-code count still get
    runtimes/common/servebench_serving.py (as {shared_dir} gives it when it runs locally)."""
    from bench.provision.images import runtime_source
    from bench.provision.serving_code import serving_code

    copy = tmp_path / "fastapi-mine"
    shutil.copytree(runtimes_dir() / "fastapi", copy)
    spec = load_runtime(str(copy))
    assert [name for name, _ in runtime_source(spec).files][-1] == "servebench_serving.py"
    assert serving_code(spec).lines == serving_code(load_runtime("fastapi")).lines
