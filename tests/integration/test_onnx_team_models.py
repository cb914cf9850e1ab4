"""The onnx runtime serving a team's model: the harness converts it (bench.models.onnx_export), the server is
started for real from its environment with MODEL_DIR at the checked export, and the harness's own parity check
sends the golden rows through the kserve-v1 codec (a DataFrame as one JSON object per row)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import team_models

from bench.config import RuntimeSpec, load_runtime
from bench.measure.parity import check_parity
from bench.models.onnx_export import OnnxExport, OnnxUnsupported, export_for
from bench.models.registry import LocalModel, resolve
from bench.protocols import codec_for
from bench.provision.envs import require_env
from bench.targets.local import LocalTarget

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """SERVEBENCH_HOME for the models saved here (MLflow model folders, as `--model DIR` takes them)."""
    folder = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERVEBENCH_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def onnx_runtime() -> RuntimeSpec:
    spec = load_runtime("onnx")
    require_env(spec)
    return spec


def _prepared(home: Path, name: str, save: Any) -> LocalModel:
    from bench.models.team import open_model

    folder = home / "saved" / name
    if not (folder / "MLmodel").is_file():
        save(str(folder))
    return resolve(open_model(str(folder)))


def _churn_model(home: Path, name: str, final: Any) -> LocalModel:
    """The team's churn pipeline with another final estimator, saved with a signature and 24 example rows."""
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = team_models.churn_frame(400)
    encode = ColumnTransformer([("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                 ["plan", "region", "autopay"])], remainder="passthrough")
    pipeline = Pipeline([("encode", encode), ("final", final)]).fit(frame, team_models.churn_labels(frame))
    example = team_models.churn_frame(24, seed=team_models.SEED + 100)
    return _prepared(home, name, lambda folder: mlflow.sklearn.save_model(
        pipeline, folder, signature=infer_signature(example, pipeline.predict(example)), input_example=example,
        serialization_format="cloudpickle", pip_requirements=[f"scikit-learn=={sklearn.__version__}"]))


def _served_parity(runtime: RuntimeSpec, model: LocalModel, export: OnnxExport, log_dir: Path,
                   bad: dict[str, Any] | None = None) -> dict[str, int]:
    """Deploy the export as the harness would (MODEL_DIR = the export's folder), check parity, send the bad
    bodies, check parity again; the bad bodies' statuses."""
    statuses = {}
    with LocalTarget().deploy(runtime, replace(model, model_dir=export.folder), log_dir) as deployment:
        tolerance = runtime.parity_tolerance(model.spec)
        parity = check_parity(deployment.endpoint, model, tolerance)
        assert parity.ok, f"{parity.error}; log {deployment.log_path}"
        for case, body in (bad or {}).items():
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            statuses[case] = requests.post(deployment.endpoint.predict_url, data=raw, timeout=30,
                                           headers={"Content-Type": "application/json"}).status_code
        assert deployment.alive(), f"bad input killed the server: log {deployment.log_path}"
        assert check_parity(deployment.endpoint, model, tolerance).ok
    return statuses


def _bad_frames(model: LocalModel) -> dict[str, Any]:
    """Rows that break the DataFrame contract, built from the golden rows as the kserve-v1 codec sends them."""
    good = json.loads(codec_for("kserve-v1").encode(model.golden_inputs[:2], model.name))["instances"]
    row = good[0]
    marked = json.dumps({"instances": [{**row, "monthly_charges": 1234567.25, "support_calls": 7777777}]}).encode()
    return {
        "missing column": {"instances": [{k: v for k, v in row.items() if k != "plan"}]},
        "unknown column": {"instances": [{**row, "coupon": "x"}]},
        "number for a string": {"instances": [{**row, "plan": 3}]},
        "number for a boolean": {"instances": [{**row, "autopay": 1}]},
        "fraction for an integer": {"instances": [{**row, "support_calls": 1.5}]},
        "null": {"instances": [{**row, "tenure_months": None}]},
        "NaN": marked.replace(b"1234567.25", b"NaN"),  # json.loads takes the token
        "infinity": marked.replace(b"1234567.25", b"1e400"),
        "integer beyond int64": marked.replace(b"7777777", b"123456789012345678901234567890"),
        "a list for a row": {"instances": [list(row.values())]},
        "no rows": {"instances": []},
        "too many rows": {"instances": [row] * 5000},
    }


@pytest.mark.parametrize("final", ["forest", "logistic"])
def test_a_dataframe_pipeline_is_served_from_its_export_like_the_reference(
        final: str, home: Path, onnx_runtime: RuntimeSpec, tmp_path: Path, no_new_servers: None) -> None:
    """A forest converts in double (int64 and double columns fed as such); a logistic regression behind the
    OneHotEncoder only in float32 (skl2onnx's double graph mixes types): both answer the golden labels."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    # an odd number of fully grown trees: no tied votes (onnxruntime breaks a tie the other way than scikit-learn,
    # and the export would rightly be refused)
    estimator = RandomForestClassifier(n_estimators=21, random_state=0) if final == "forest" \
        else LogisticRegression(max_iter=1000)
    model = _churn_model(home, f"churn-{final}", estimator)
    export = export_for(model)
    assert isinstance(export, OnnxExport), export
    assert export.input_kind == "dataframe" and export.answers == "labels"
    number = "tensor(double)" if final == "forest" else "tensor(float)"
    assert dict((i.name, i.onnx_type) for i in export.inputs)["monthly_charges"] == number
    statuses = _served_parity(onnx_runtime, model, export, tmp_path, _bad_frames(model))
    assert statuses.pop("too many rows") == 413
    assert {case: status for case, status in statuses.items() if status != 422} == {}, statuses


def test_a_torch_tensor_model_is_served_from_its_export(home: Path, onnx_runtime: RuntimeSpec, tmp_path: Path,
                                                       no_new_servers: None) -> None:
    """The team's MLP as MLflow 3 saves it (a torch.export program), exported by torch.onnx's TorchScript
    exporter with a dynamic batch axis."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    net = team_models.train_tensor_mlp()
    example = team_models.tensor_rows(8)
    with torch.no_grad():
        signature = infer_signature(example, net(torch.from_numpy(example)).numpy())
    model = _prepared(home, "mlp", lambda folder: mlflow.pytorch.save_model(
        net, folder, signature=signature, input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"]))
    export = export_for(model)
    assert isinstance(export, OnnxExport), export
    assert export.input_kind == "tensor" and export.converter.startswith("torch.onnx")
    assert export.max_abs_diff is not None and export.max_abs_diff <= 1e-5
    statuses = _served_parity(onnx_runtime, model, export, tmp_path, {
        "wrong width": {"instances": [[1.0] * 3]},
        "NaN": b'{"instances": [[NaN' + b", 0.0" * 15 + b"]]}",
        "strings": {"instances": [["a"] * 16]},
    })
    assert set(statuses.values()) == {422}, statuses


def test_the_teams_churn_model_is_served_or_unsupported_with_the_converters_reason(
        home: Path, onnx_runtime: RuntimeSpec, tmp_path: Path, no_new_servers: None) -> None:
    """HistGradientBoosting as the team logged it (skops): skl2onnx 1.20 with onnx 1.23 cannot build its tree
    node (a Python bool in an int attribute); when a converter can, the export must answer like the model."""
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature

    pipeline, frame = team_models.train_churn_pipeline(rows=600)
    example = frame.head(16)
    model = _prepared(home, "team-churn", lambda folder: mlflow.sklearn.save_model(
        pipeline, folder, signature=infer_signature(example, pipeline.predict(example)), input_example=example,
        serialization_format="cloudpickle", pip_requirements=[f"scikit-learn=={sklearn.__version__}"]))
    export = export_for(model)
    if isinstance(export, OnnxUnsupported):
        assert export.reason.startswith("skl2onnx ") and "HistGradientBoostingClassifier" in export.reason, export
        return
    _served_parity(onnx_runtime, model, export, tmp_path)


def test_a_reference_model_is_still_served_from_its_mlflow_folder(
        models: dict[str, LocalModel], onnx_runtime: RuntimeSpec, tmp_path: Path, no_new_servers: None) -> None:
    model = models["iris-logreg"]
    export = export_for(model)
    assert isinstance(export, OnnxExport) and export.folder == model.model_dir and export.output is None
    with LocalTarget().deploy(onnx_runtime, model, tmp_path) as deployment:
        parity = check_parity(deployment.endpoint, model, onnx_runtime.parity_tolerance(model.spec))
        assert parity.ok and parity.max_abs_diff is not None and parity.max_abs_diff <= 1e-6, parity
    assert np.asarray(model.golden_inputs).dtype == np.float64
