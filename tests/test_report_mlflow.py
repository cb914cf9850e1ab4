"""Logging a bench run to MLflow: one parent run per bench run with the report and results as artifacts, one
nested child run per cell with params and metrics, against a temporary SQLite store; logging twice adds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_runs import with_bad_cells

from bench.report import log_run
from bench.report.mlflow_log import EXPERIMENT


@pytest.fixture(params=["servebench-home", "tracking-uri"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The default store (SQLite under SERVEBENCH_HOME) or one named by MLFLOW_TRACKING_URI."""
    monkeypatch.setenv("SERVEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under ./mlruns when the URI names only a database
    if request.param == "tracking-uri":
        uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        return uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_run_is_logged_as_parent_with_a_child_per_cell(store: str, tmp_path: Path) -> None:
    run = with_bad_cells(tmp_path / "run")
    parent_id = log_run(run)

    assert (run / "report.html").is_file()  # rendered first, so it can be attached
    client = _client(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "20261125-121208-smoke-quick-cb1a"
    assert parent.info.experiment_id == experiment.experiment_id
    assert parent.info.status == "KILLED"  # the run was interrupted
    assert parent.data.params["scenario"] == "smoke" and parent.data.metrics["valid_cells"] == 1
    assert {a.path for a in client.list_artifacts(parent_id)} == {"report.html", "summary.md", "results.json"}
    # artifacts stay with the store: under the state dir by default, never in the caller's working directory
    artifacts = Path(experiment.artifact_location.removeprefix("file://"))
    assert artifacts.is_relative_to(tmp_path) and (artifacts / parent_id / "artifacts" / "report.html").is_file()
    if store.endswith("/home/mlflow.db"):
        assert artifacts.is_relative_to(tmp_path / "home") and not (tmp_path / "mlruns").exists()

    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    by_runtime = {child.data.params["runtime"]: child for child in children}
    assert sorted(by_runtime) == ["bentoml", "fastapi", "mlflow", "mlserver"]
    fastapi = by_runtime["fastapi"]
    assert fastapi.data.params["model"] == "iris-logreg" and fastapi.data.params["label"] == "rate=50"
    assert fastapi.data.params["setting.event_loop"] == "uvloop"
    assert fastapi.data.metrics["latency_p99_ms"] == pytest.approx(2.428644)
    assert fastapi.data.metrics["throughput_rps"] == pytest.approx(50.0)
    assert fastapi.data.metrics["server_rss_mb_max"] > 100 and fastapi.data.metrics["valid"] == 1.0
    history = client.get_metric_history(fastapi.info.run_id, "ts_p99_ms")
    assert [m.step for m in history] == list(range(13))  # one point per measured second
    failed = by_runtime["mlflow"]
    assert failed.info.status == "FAILED" and "latency_p99_ms" not in failed.data.metrics  # None is skipped
    assert "did not become ready" in failed.data.tags["servebench.reasons"]
    assert by_runtime["bentoml"].data.metrics["valid"] == 0.0

    assert log_run(run) == parent_id  # idempotent: same parent, no duplicate children
    again = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(again) == 4
    assert len(client.search_runs([experiment.experiment_id])) == 5
