"""A team's DataFrame model (a scikit-learn Pipeline over named, typed columns, string labels out), served for
real by every runtime that loads MLflow models: each answers the DataFrame body of its own protocol with the
labels MLflow's pyfunc gives for the same rows, and a body missing a column with its documented status.

The wire forms (what the harness's codecs send for a column-based signature):
- KServe V1 (fastapi, bentoml, kserve, torchserve, rayserve): {"instances": [{"plan": "basic", ...}, ...]}
  -> {"predictions": ["churn", ...]};
- Open Inference Protocol V2 (mlserver, and fastapi's and kserve's /v2 endpoints): one input per column,
  {"parameters": {"content_type": "pd"}, "inputs": [{"name": "plan", "shape": [n, 1], "datatype": "BYTES",
  ...}, {"name": "autopay", ..., "datatype": "BOOL"}, ...]} -> outputs[0] of datatype BYTES;
- Seldon: {"jsonData": {"columns": [...], "data": [[...], ...]}} -> {"jsonData": {"predictions": [...]}};
- MLflow's scoring server: {"dataframe_split": {"columns": [...], "data": [[...], ...]}} -> {"predictions": [...]}.

The model records requirements the runtimes do not pin (skops, which MLflow 3.17 saves scikit-learn models
with): each runtime serves it from the environment bench.provision.model_envs derives for it (built once,
then cached), handed to LocalTarget in place of the runtime's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import team_models

import bench.targets.local as local_target
from bench.config import ModelSpec, RuntimeSpec, load_runtime
from bench.models.registry import LocalModel
from bench.provision.envs import RuntimeEnv
from bench.provision.model_envs import Unsupported, model_env
from bench.targets.base import Endpoint
from bench.targets.local import LocalTarget

pytestmark = pytest.mark.integration

NAME = "team-churn"
ROWS = 6
V2_DATATYPES = {"bool": "BOOL", "int64": "INT64", "float64": "FP64"}  # anything else here: strings, BYTES


@dataclass(frozen=True)
class Churn:
    model: LocalModel
    frame: Any  # the request rows, a pandas DataFrame
    expected: list[str]  # MLflow pyfunc's labels for them
    requirements: list[str]
    flavours: tuple[str, ...]


# Logged in a child process, so that MLflow's tracking and registry settings (which mlflow.set_tracking_uri
# exports to the environment) stay out of the test session.
LOG_AND_DOWNLOAD = """
import sys
from pathlib import Path
import mlflow
sys.path.insert(0, sys.argv[3])
import team_models
root, name = Path(sys.argv[1]), sys.argv[2]
store = f"sqlite:///{root / 'mlflow.db'}"
mlflow.set_tracking_uri(store)
mlflow.set_registry_uri(store)
mlflow.set_experiment(experiment_id=mlflow.create_experiment("team", artifact_location=(root / "artifacts").as_uri()))
registered = team_models.log_churn_pipeline(name)
print(mlflow.artifacts.download_artifacts(registered.uri, dst_path=str(root / "model")))
print(registered.uri)
print(registered.version)
"""


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Churn:
    """The churn Pipeline logged and registered in a scratch MLflow store, downloaded as a model folder."""
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("mlflow")
    done = subprocess.run([sys.executable, "-c", LOG_AND_DOWNLOAD, str(root), NAME,
                           str(Path(team_models.__file__).parent)],
                          capture_output=True, text=True, timeout=600, env={
                              key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")})
    assert done.returncode == 0, done.stderr[-3000:]
    folder, uri, version = done.stdout.strip().splitlines()[-3:]
    model_dir = Path(folder)
    frame = team_models.churn_frame(ROWS, seed=2024)
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    expected = [str(label) for label in pyfunc.predict(frame)]
    spec = ModelSpec(name=NAME, framework="sklearn", description="a team's churn Pipeline", parity_atol=0.0,
                     input_kind="dataframe", flavours=tuple(pyfunc.metadata.flavors), source=uri)
    model = LocalModel(spec, version, "test", model_dir, np.empty((0, 0)), np.asarray(expected))
    requirements = (model_dir / "requirements.txt").read_text().splitlines()
    return Churn(model, frame, expected, requirements, spec.flavours)


def _records(frame: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


def _split(frame: Any) -> dict[str, Any]:
    split: dict[str, Any] = json.loads(frame.to_json(orient="split", index=False))
    return split


def _v2(frame: Any) -> dict[str, Any]:
    inputs = []
    for name in frame.columns:
        datatype = V2_DATATYPES.get(str(frame[name].dtype), "BYTES")
        tensor: dict[str, Any] = {"name": name, "shape": [len(frame), 1], "datatype": datatype,
                                  "data": frame[name].tolist()}
        if datatype == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def _v1_answer(body: Any) -> Any:
    return body["predictions"]


def _v2_answer(body: Any) -> Any:
    return body["outputs"][0]["data"]


def _seldon_answer(body: Any) -> Any:
    return body["jsonData"]["predictions"]


@dataclass(frozen=True)
class Form:
    """One protocol's DataFrame request: where it goes, its body for a frame, and where the labels are."""

    path: str | None  # None: the runtime's own predict path
    body: Any
    answer: Any


V1 = Form(None, lambda frame: {"instances": _records(frame)}, _v1_answer)
V2 = Form(f"/v2/models/{NAME}/infer", _v2, _v2_answer)
FORMS: dict[str, list[Form]] = {
    "fastapi": [V1, V2],
    "bentoml": [V1],
    "kserve": [V1, V2],
    "torchserve": [V1],
    "rayserve": [V1],
    "seldon": [Form(None, lambda frame: {"jsonData": _split(frame)}, _seldon_answer)],
    "mlflow": [Form(None, lambda frame: {"dataframe_split": _split(frame)}, _v1_answer)],
    "mlserver": [Form(None, _v2, _v2_answer)],
}
# A body without the "region" column: a 4xx from every runtime (KServe's own InvalidInput is 400, MLflow's
# schema enforcement 400), except MLServer 1.7, which answers the model's schema error with a 500 (measured:
# "mlflow.exceptions.MlflowException: Failed to enforce schema ..."); asserted exactly, so a change shows.
MISSING_COLUMN_STATUS = {"kserve": 400, "mlflow": 400, "mlserver": 500}


def _url(endpoint: Endpoint, form: Form) -> str:
    return endpoint.predict_url if form.path is None else endpoint.base_url + form.path


def _env_for(runtime: RuntimeSpec, churn: Churn) -> RuntimeEnv:
    found = model_env(runtime, churn.requirements, churn.flavours,
                      lambda name, status: print(f"{name} environment: {status}"))
    if isinstance(found, Unsupported):
        pytest.fail(f"{runtime.name} cannot take the model's requirements: {found.reason}")
    return found.env


@pytest.mark.parametrize("runtime_name", list(FORMS))
def test_a_dataframe_model_answers_like_pyfunc_and_a_missing_column_is_refused(
        runtime_name: str, churn: Churn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        no_new_servers: None) -> None:
    runtime = load_runtime(runtime_name)
    env = _env_for(runtime, churn)
    monkeypatch.setattr(local_target, "require_env", lambda *_args, **_kwargs: env)
    with LocalTarget().deploy(runtime, churn.model, tmp_path) as deployment:
        for form in FORMS[runtime_name]:
            url = _url(deployment.endpoint, form)
            response = requests.post(url, json=form.body(churn.frame), timeout=60)
            assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:500]}"
            assert form.answer(response.json()) == churn.expected, response.text[:500]
            missing = requests.post(url, json=form.body(churn.frame.drop(columns=["region"])), timeout=60)
            expected_status = MISSING_COLUMN_STATUS.get(runtime_name, 422)
            assert missing.status_code == expected_status, f"{url}: {missing.status_code} {missing.text[:300]}"
        assert deployment.alive(), f"{runtime_name} died: log {deployment.log_path}"
