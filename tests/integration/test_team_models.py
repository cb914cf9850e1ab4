"""A team's own models, as its training job registered them (tests/team_models.py logs them into a fresh
MLflow store): `bench check` and `bench run` with `--model models:/NAME/1` on every runtime, and the
one-line errors for what a user gets wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import team_models

from bench.results.store import load_results

BENCH = [sys.executable, "-m", "bench.cli"]
pytestmark = pytest.mark.integration
# The runtimes the issue names as serving a scikit-learn pipeline over a DataFrame: each must answer it.
DATAFRAME_SERVERS = {"mlserver", "mlflow", "fastapi", "bentoml", "kserve", "seldon"}


@dataclass(frozen=True)
class Store:
    uri: str
    churn: team_models.Registered
    mlp: team_models.Registered
    rows: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    import mlflow

    folder = tmp_path_factory.mktemp("team-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(  # artifacts under the test's folder
        "team", artifact_location=(folder / "artifacts").as_uri()))
    try:
        churn, mlp = team_models.log_churn_pipeline(), team_models.log_tensor_mlp()
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    yield Store(uri, churn, mlp, team_models.write_churn_rows(folder / "rows.parquet", rows=200))


def bench(*argv: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return subprocess.run([*BENCH, *argv], capture_output=True, text=True, timeout=timeout, env=env)


def check_rows(store: Store, uri: str, tmp_path: Path) -> dict[str, dict[str, object]]:
    out = tmp_path / "check.json"
    result = bench("check", "--runtime", "all", "--model", uri, "--tracking-uri", store.uri, "--json", str(out))
    assert out.is_file(), result.stderr[-2000:]
    rows = {str(row["runtime"]): row for row in json.loads(out.read_text())}
    assert result.returncode == (1 if any(row["status"] not in ("ok", "unsupported") for row in rows.values())
                                 else 0)
    return rows


def test_every_runtime_answers_a_pipeline_over_a_mixed_type_dataframe_or_says_why_not(store: Store,
                                                                                       tmp_path: Path) -> None:
    rows = check_rows(store, store.churn.uri, tmp_path)
    assert {name for name, row in rows.items() if row["status"] == "ok"} >= DATAFRAME_SERVERS, rows
    for name, row in rows.items():
        assert row["status"] in ("ok", "unsupported"), (name, row)
        if row["status"] == "unsupported":
            assert str(row["error"]).startswith("unsupported: ") and len(str(row["error"])) > 20


def test_every_runtime_answers_a_torch_net_with_a_tensor_signature_or_says_why_not(store: Store,
                                                                                   tmp_path: Path) -> None:
    rows = check_rows(store, store.mlp.uri, tmp_path)
    assert {name for name, row in rows.items() if row["status"] == "ok"} >= DATAFRAME_SERVERS | {"onnx"}, rows
    assert all(row["status"] in ("ok", "unsupported") for row in rows.values()), rows


def test_a_run_measures_the_teams_rows_and_records_where_the_model_came_from(store: Store, tmp_path: Path) -> None:
    scenario = tmp_path / "brief.yaml"
    scenario.write_text(json.dumps({"name": "brief", "loop": "open", "arrival": "poisson", "rate": 20,
                                    "warmup_s": 1, "duration_s": 4, "slo": {"percentile": "p99", "ms": 500},
                                    "min_requests": 20}))
    result = bench("run", "--runtime", "mlserver,fastapi", "--model", store.churn.uri, "--data", str(store.rows),
                   "--tracking-uri", store.uri, "--scenario", str(scenario), "--length", "smoke",
                   "--out", str(tmp_path / "run"), "--no-mlflow")
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(tmp_path / "run")
    assert {cell.runtime for cell in results.cells if cell.validity.valid and cell.parity.ok} == {"mlserver",
                                                                                                 "fastapi"}
    record = results.models["team-churn"]
    assert record.source == store.churn.uri and record.resolved == "models:/team-churn/1"
    assert record.input_kind == "dataframe" and "sklearn" in record.flavours and record.content_hash
    assert record.inputs is not None and "plan: string" in record.inputs and "autopay: boolean" in record.inputs
    assert record.data == "rows.parquet (200 rows)"
    html = (tmp_path / "run" / "report.html").read_text()
    assert store.churn.uri in html and record.content_hash[:16] in html


def _error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_what_a_user_gets_wrong_is_one_line_before_anything_starts(store: Store, tmp_path: Path) -> None:
    assert "registered versions: 1" in _error(bench("check", "--runtime", "fastapi", "--model",
                                                    "models:/team-churn/7", "--tracking-uri", store.uri))
    assert "models:/team-churn/1" in _error(bench("check", "--runtime", "fastapi", "--model", "team-churn",
                                                  "--tracking-uri", store.uri))  # the bare name: the URI to give
    frame = pd.read_parquet(store.rows).drop(columns=["region"])
    frame.to_parquet(tmp_path / "short.parquet")
    assert "column 'region' is missing" in _error(bench("check", "--runtime", "fastapi", "--model", store.churn.uri,
                                                        "--tracking-uri", store.uri, "--data",
                                                        str(tmp_path / "short.parquet")))
    typed = pd.read_parquet(store.rows).astype({"tenure_months": str})
    typed.to_parquet(tmp_path / "typed.parquet")
    assert "column 'tenure_months' must hold long values" in _error(bench(
        "check", "--runtime", "fastapi", "--model", store.churn.uri, "--tracking-uri", store.uri, "--data",
        str(tmp_path / "typed.parquet")))
    started = time.monotonic()
    unreachable = bench("check", "--runtime", "fastapi", "--model", "models:/team-churn/1", "--tracking-uri",
                        "http://alice:hunter2-token@127.0.0.1:9/")
    assert "cannot reach the tracking server" in _error(unreachable)
    assert "hunter2" not in unreachable.stdout + unreachable.stderr
    assert time.monotonic() - started < 60  # one retry, not MLflow's minutes of back-off
    assert "no such folder" in _error(bench("check", "--runtime", "fastapi", "--model", str(tmp_path / "nope")))


def test_a_model_with_no_signature_no_example_and_no_data_is_refused(tmp_path: Path) -> None:
    import mlflow
    import mlflow.sklearn

    pipeline, _frame = team_models.train_churn_pipeline(rows=200)
    folder = tmp_path / "bare-model"
    mlflow.sklearn.save_model(pipeline, str(folder), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    assert "neither a signature nor an input example" in _error(bench("check", "--runtime", "fastapi", "--model",
                                                                      str(folder)))


def test_an_artifact_changed_in_the_store_after_first_use_is_refused(tmp_path: Path) -> None:
    """Anyone who can write to a shared store could swap a version's pickle (and its answers with it): the
    content first used here is recorded, and one byte changed afterwards stops the run before anything
    starts."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    artifacts = tmp_path / "artifacts"
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("tamper", artifact_location=artifacts.as_uri()))
        features = np.random.default_rng(3).normal(size=(200, 4))
        model = LogisticRegression().fit(features, features[:, 0] > 0)
        with mlflow.start_run():
            mlflow.sklearn.log_model(model, name="model", input_example=features[:4],
                                     serialization_format="cloudpickle", pip_requirements=["scikit-learn"],
                                     registered_model_name="tamper-me")
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    first = bench("check", "--runtime", "fastapi", "--model", "models:/tamper-me/1", "--tracking-uri", uri)
    assert first.returncode == 0, first.stderr[-2000:]
    (pickle,) = [path for path in artifacts.rglob("model.pkl")]
    data = bytearray(pickle.read_bytes())
    data[len(data) // 2] ^= 0x01
    pickle.write_bytes(bytes(data))
    scenario = tmp_path / "s.yaml"
    scenario.write_text('{"name": "s", "loop": "open", "arrival": "poisson", "rate": 20, "warmup_s": 1, '
                        '"duration_s": 3, "slo": {"percentile": "p99", "ms": 500}, "min_requests": 10}')
    started = time.monotonic()
    refused = bench("run", "--runtime", "fastapi", "--model", "models:/tamper-me/1", "--tracking-uri", uri,
                    "--scenario", str(scenario), "--no-mlflow", "--out", str(tmp_path / "run"))
    assert "models:/tamper-me/1: its artifact is not the one first used here" in _error(refused)
    assert time.monotonic() - started < 60 and not (tmp_path / "run" / "results.json").exists()
