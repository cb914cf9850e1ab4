"""The ONNX export of a team's model (bench.models.onnx_export): converted in the harness, checked against the
model's reference answers, reused, or unsupported with the converter's reason.

Small models saved as MLflow model folders in a throwaway place, prepared the way `--model DIR` prepares them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.models.onnx_export import (
    DESCRIPTION_FILE,
    EXPORT_FOLDER,
    ONNX_FILE,
    OnnxExport,
    OnnxUnsupported,
    export_for,
)
from bench.models.registry import LocalModel, resolve

COLUMNS = ("plan", "autopay", "calls", "charges")


def _frame(rows: int, seed: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "plan": rng.choice(["basic", "plus", "premium"], size=rows),
        "autopay": rng.random(rows) < 0.5,
        "calls": rng.integers(0, 6, size=rows).astype(np.int64),
        "charges": np.round(rng.uniform(10.0, 120.0, size=rows), 2),
    })


def _labels(frame: Any) -> Any:
    score = frame["calls"] * 0.5 - frame["autopay"] * 1.0 + (frame["plan"] == "basic") + frame["charges"] * 0.01
    return np.where(score > 1.5, "churn", "stay")


def _pipeline(final: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer([("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                 ["plan", "autopay"])], remainder="passthrough")
    return Pipeline([("encode", encode), ("final", final)])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where models are saved (MLflow model folders, as `--model DIR` takes them), with SERVEBENCH_HOME there
    too. A folder rather than a tracking server: a SQLite store costs ten seconds of migrations."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERVEBENCH_HOME", str(home))
        yield home


def _logged(store: Path, name: str, estimator: Any, predict_fn: str | None = None, numeric: bool = False) -> LocalModel:
    """Fit on a small frame, save as a training job logs it (signature, input example), and prepare as
    `--model DIR` does (golden rows from the example, reference answers from MLflow's pyfunc)."""
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature

    from bench.models.team import open_model

    frame = _frame(120, seed=1)
    labels = _labels(frame)
    estimator.fit(frame, (labels == "churn").astype(np.float64) if numeric else labels)
    example = _frame(12, seed=2)
    extra = {"pyfunc_predict_fn": predict_fn} if predict_fn else {}
    mlflow.sklearn.save_model(estimator, str(store / name), input_example=example,
                              signature=infer_signature(example, estimator.predict(example)),
                              serialization_format="cloudpickle",
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"], **extra)
    return resolve(open_model(str(store / name)))


@pytest.fixture(scope="module")
def tree_model(store: Path) -> LocalModel:
    from sklearn.tree import DecisionTreeClassifier

    return _logged(store, "tree", _pipeline(DecisionTreeClassifier(max_depth=4, random_state=0)))


def test_a_dataframe_pipeline_converts_with_a_typed_input_per_column(tree_model: LocalModel) -> None:
    export = export_for(tree_model)
    assert isinstance(export, OnnxExport), export
    assert export.folder == tree_model.model_dir.parent / EXPORT_FOLDER
    assert export.input_kind == "dataframe" and export.answers == "labels" and export.output == "label"
    assert [(i.name, i.kind, i.onnx_type) for i in export.inputs] == [
        ("plan", "string", "tensor(string)"), ("autopay", "boolean", "tensor(bool)"),
        ("calls", "integer", "tensor(int64)"), ("charges", "number", "tensor(double)")]
    assert export.max_abs_diff == 0.0

    import onnxruntime

    session = onnxruntime.InferenceSession(str(export.model_file), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()][1] == ("autopay", "tensor(bool)")  # cast inside
    rows = tree_model.golden_inputs
    feeds = {"plan": rows["plan"].to_numpy(dtype=object).reshape(-1, 1),
             "autopay": rows["autopay"].to_numpy(dtype=bool).reshape(-1, 1),
             "calls": rows["calls"].to_numpy(dtype=np.int64).reshape(-1, 1),
             "charges": rows["charges"].to_numpy(dtype=np.float64).reshape(-1, 1)}
    labels = session.run(["label"], feeds)[0]
    assert labels.tolist() == tree_model.golden_outputs.ravel().tolist()

    description = json.loads((export.folder / DESCRIPTION_FILE).read_text())
    assert description["output"] == "label" and description["input_kind"] == "dataframe"
    assert description["converter"].startswith("skl2onnx ")


def test_a_checked_export_is_reused_and_checked_against_new_golden_rows(tree_model: LocalModel) -> None:
    first = export_for(tree_model)
    assert isinstance(first, OnnxExport)
    written = (first.folder / ONNX_FILE).stat().st_mtime_ns
    again = export_for(tree_model)
    assert isinstance(again, OnnxExport) and again.reused
    golden = tree_model.golden_inputs, tree_model.golden_outputs
    fewer = replace(tree_model, golden_inputs=golden[0][:5], golden_outputs=golden[1][:5])
    rechecked = export_for(fewer)
    assert isinstance(rechecked, OnnxExport) and rechecked.reused
    assert (first.folder / ONNX_FILE).stat().st_mtime_ns == written  # not converted again
    checked = json.loads((first.folder / DESCRIPTION_FILE).read_text())["checked"]
    assert sorted(entry["rows"] for entry in checked) == [5, len(tree_model.golden_outputs)]


def test_answers_that_differ_from_the_reference_are_unsupported(tree_model: LocalModel) -> None:
    flipped = np.where(tree_model.golden_outputs == "stay", "churn", "stay").astype(object)
    result = export_for(replace(tree_model, golden_outputs=flipped))
    assert isinstance(result, OnnxUnsupported)
    assert result.reason.startswith(f"the ONNX export answers {len(flipped)} of {len(flipped)} rows differently")
    assert "\n" not in result.reason
    assert isinstance(export_for(tree_model), OnnxExport)  # the true answers still find it


def test_probabilities_when_the_model_predicts_them(store: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = _logged(store, "logreg", _pipeline(LogisticRegression(max_iter=500)), predict_fn="predict_proba")
    export = export_for(model)
    assert isinstance(export, OnnxExport), export
    assert export.output == "probabilities" and export.answers == "numbers"
    assert export.max_abs_diff is not None and export.max_abs_diff <= 1e-6


def test_a_model_skl2onnx_cannot_convert_is_unsupported_with_its_reason(store: Path) -> None:
    from sklearn.kernel_ridge import KernelRidge

    model = _logged(store, "kernel-ridge", _pipeline(KernelRidge()), numeric=True)
    result = export_for(model)
    assert isinstance(result, OnnxUnsupported)
    assert result.reason.startswith("skl2onnx ") and "cannot convert KernelRidge" in result.reason, result.reason
    assert "\n" not in result.reason and len(result.reason) <= 240
    remembered = model.model_dir.parent / "onnx-unsupported.json"
    assert result.reason in json.loads(remembered.read_text()).values()
    assert not (model.model_dir.parent / EXPORT_FOLDER).exists()
    assert export_for(model) == result  # remembered, not converted again


def test_a_reference_model_keeps_the_export_in_its_own_folder(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from bench.config import ModelSpec

    features = np.random.default_rng(0).normal(size=(30, 4))
    fitted = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / ONNX_FILE).write_bytes(to_onnx(fitted, features[:1], options={"zipmap": False}).SerializeToString())
    spec = ModelSpec(name="tiny", framework="sklearn", description="", parity_atol=1e-9)
    reference = LocalModel(spec, "1", "fp", model_dir, features, fitted.predict_proba(features))
    export = export_for(reference)
    assert isinstance(export, OnnxExport)
    assert export.folder == model_dir and export.output is None  # the last output, as the runtime always did
    assert os.listdir(tmp_path) == ["model"]  # nothing derived beside it
