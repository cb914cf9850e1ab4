"""Log a bench run to MLflow: one parent run per bench run, one nested child run per cell.

Same tracking store as the reference models (bench.models.registry: SQLite under the state dir by
default, MLFLOW_TRACKING_URI when set), experiment `servebench`. Children carry the runtime, model,
scenario, load and settings as params and the latency, throughput and resource figures as metrics
(the per-second series as metric history); the parent carries report.html, summary.md and
results.json. Logging the same run again reuses its parent, adds only cells not logged yet and
refreshes the artifacts, so a re-run of `bench report` never duplicates runs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.models import registry
from bench.redact import redact_uri
from bench.report.model import LATENCY_KEYS, ReportData, Run, load_runs, records
from bench.report.render import REPORT_FILE, SUMMARY_FILE, render_run_reports
from bench.results.store import RESULTS_FILE

EXPERIMENT = "servebench"
RUN_TAG = "servebench.run_id"
CELL_TAG = "servebench.cell_id"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 500
BATCH_LIMIT = 900  # MLflow accepts at most 1000 metrics per log_batch call
RUN_STATUS = {"complete": "FINISHED", "interrupted": "KILLED"}
# The report's numeric columns, logged under their own names; latency figures get a latency_ prefix
# (p50_ms is latency_p50_ms), since a bare p50 says nothing in MLflow's run comparison view.
NUMERIC_COLUMNS = (
    *[f"{key}_ms" for key in LATENCY_KEYS], "p50_ci_low", "p50_ci_high", "p99_ci_low", "p99_ci_high",
    "offered_rps", "achieved_rps", "throughput_rps", "goodput_rps", "rows_per_s", "requests", "errors", "error_rate",
    "server_cpu_percent_mean", "server_cpu_percent_max", "server_rss_mb_max", "server_startup_s",
    "generator_cpu_percent_max", "parity_max_abs_diff", "measured_s",
)
LATENCY_COLUMNS = {*[f"{key}_ms" for key in LATENCY_KEYS], "p50_ci_low", "p50_ci_high", "p99_ci_low", "p99_ci_high"}
METRIC_COLUMNS = {("latency_" + column if column in LATENCY_COLUMNS else column): column
                  for column in NUMERIC_COLUMNS}
FLAG_COLUMNS = {"valid": "valid", "slo_met": "slo_met", "parity_ok": "parity_ok"}
SERIES_METRICS = {"ts_ok_rps": "ok_rps", "ts_p50_ms": "p50_ms", "ts_p99_ms": "p99_ms",
                  "ts_server_cpu_percent": "server_cpu_percent", "ts_server_rss_mb": "server_rss_mb"}


def _value(value: Any) -> float | None:
    """A finite number for MLflow, or None (skipped): MLflow stores no nulls and NaN helps nobody."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and not math.isnan(float(value)) and not math.isinf(float(value)):
        return float(value)
    return None


def _param(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


def cell_params(run: Run, cell: pd.Series) -> dict[str, str]:
    settings = run.runtime_info(str(cell["runtime"])).settings
    raw: dict[str, object] = {
        "run_id": run.run_id, "cell_id": cell["cell_id"], "runtime": cell["runtime"], "model": cell["model"],
        "scenario": cell["scenario"], "label": cell["label"], "batch_size": cell["batch_size"],
        "target": cell["target"], "loop": cell["loop"], "arrival": cell["arrival"],
        "users": None if pd.isna(cell["users"]) else int(cell["users"]),
        "offered_rps": cell["offered_rps"], "status": cell["status"],
        "slo": None if pd.isna(cell["slo_ms"]) else f"{cell['slo_percentile'] or 'p99'} <= {cell['slo_ms']:g} ms",
        **{f"setting.{key}": value for key, value in settings.items()},
        **{f"fairness.{key}": value for key, value in run.results.fairness.model_dump(exclude_none=True).items()},
    }
    params = {key: _param(value) for key, value in raw.items()}
    return {key: value for key, value in params.items() if value is not None}


def cell_metrics(cell: pd.Series) -> dict[str, float]:
    metrics = {name: _value(cell[column]) for name, column in {**METRIC_COLUMNS, **FLAG_COLUMNS}.items()}
    return {name: value for name, value in metrics.items() if value is not None}


def _series_metrics(data: ReportData, cell: pd.Series) -> Iterator[tuple[str, float, int]]:
    """The measured seconds (warm-up left out) as metric history, step = second."""
    series = data.timeseries.loc[(data.timeseries["run_id"] == cell["run_id"])
                                 & (data.timeseries["cell_id"] == cell["cell_id"]) & (data.timeseries["t"] >= 0)]
    for row in records(series):
        for name, column in SERIES_METRICS.items():
            value = _value(row[column])
            if value is not None:
                yield name, value, int(row["t"])


def _log_batch(client: Any, run_id: str, metrics: list[tuple[str, float, int]], params: dict[str, str],
               tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    entries = [Metric(key, value, now, step) for key, value, step in metrics]
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()], metrics=entries[:BATCH_LIMIT])
    for start in range(BATCH_LIMIT, len(entries), BATCH_LIMIT):
        client.log_batch(run_id, metrics=entries[start : start + BATCH_LIMIT])


def _find_runs(client: Any, experiment_id: str, tag: str, value: str) -> list[Any]:
    escaped = value.replace("'", "\\'")
    return list(client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{escaped}'", max_results=5000))


def _parent(client: Any, experiment_id: str, run: Run, data: ReportData) -> str:
    existing = [r for r in _find_runs(client, experiment_id, RUN_TAG, run.run_id) if PARENT_TAG not in r.data.tags]
    if existing:
        return str(existing[0].info.run_id)
    env = run.results.environment
    parent = client.create_run(experiment_id, run_name=run.run_id, tags={RUN_TAG: run.run_id,
                                                                         "servebench.kind": "bench-run"})
    params = {"run_id": run.run_id, "scenario": run.scenario_name, "profile": run.length_name,
              "target": run.results.target, "host": env.host, "cpu_model": env.cpu_model, "cores": env.cores,
              "python": env.python, "git_sha": env.git_sha, "schema_version": run.results.schema_version,
              "runtimes": ",".join(data.runtimes), "models": ",".join(data.models)}
    parent_id = str(parent.info.run_id)
    _log_batch(client, parent_id, [], {k: v for k, p in params.items() if (v := _param(p)) is not None}, {})
    return parent_id


def _experiment_id(client: Any, user_uri: str | None) -> str:
    """The servebench experiment; in the default store its artifacts live under the state dir.

    registry._experiment_id decides that from MLFLOW_TRACKING_URI, but mlflow.set_tracking_uri (called
    by registry._client) sets that variable itself, so it would always choose MLflow's default: ./mlruns
    under whatever directory the command runs in. Decide from the variable as the user left it."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(EXPERIMENT, artifact_location=None if user_uri else registry.artifact_root()))


def _log(client: Any, run_dir: Path, user_uri: str | None) -> str:
    data = load_runs([run_dir])
    run = data.runs[0]
    experiment_id = _experiment_id(client, user_uri)
    parent_id = _parent(client, experiment_id, run, data)
    logged = {r.data.tags.get(CELL_TAG) for r in _find_runs(client, experiment_id, PARENT_TAG, parent_id)}
    for _, cell in data.cells.iterrows():
        if cell["cell_id"] in logged:
            continue
        child = client.create_run(experiment_id, run_name=f"{cell['runtime']} {cell['model']} {cell['label']}",
                                  tags={PARENT_TAG: parent_id, RUN_TAG: run.run_id, CELL_TAG: str(cell["cell_id"])})
        child_id = str(child.info.run_id)
        metrics = [(name, value, 0) for name, value in cell_metrics(cell).items()]
        metrics += list(_series_metrics(data, cell))
        reasons = "; ".join(cell["invalid_reasons"])
        _log_batch(client, child_id, metrics, cell_params(run, cell),
                   {"servebench.status": str(cell["status"]), **({"servebench.reasons": reasons[:4000]}
                                                                 if reasons else {})})
        client.set_terminated(child_id, status="FAILED" if cell["status"] == "failed" else "FINISHED")
    cells = data.cells
    _log_batch(client, parent_id, [("cells", float(len(cells)), 0), ("valid_cells", float(cells["valid"].sum()), 0),
                                   ("failed_cells", float((cells["status"] == "failed").sum()), 0)], {},
               {"servebench.status": run.status})
    for name in (RESULTS_FILE, REPORT_FILE, SUMMARY_FILE):
        if (run.folder / name).is_file():
            client.log_artifact(parent_id, str(run.folder / name))
    client.set_terminated(parent_id, status=RUN_STATUS.get(run.status, "FAILED"))
    return parent_id


def log_run(run_dir: Path) -> str:
    """Log one run folder to MLflow; returns the parent run's id. Renders the report first if missing."""
    run_dir = Path(run_dir)
    if not (run_dir / REPORT_FILE).is_file():
        render_run_reports([run_dir])
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    user_uri = os.environ.get("MLFLOW_TRACKING_URI")  # before registry._client(): MLflow overwrites it
    try:
        return _log(registry._client(), run_dir, user_uri)
    except (MlflowException, RequestException, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"logging {run_dir} to MLflow ({redact_uri(registry.tracking_uri())}) failed: "
                         f"{redact_uri(message[:300])}",
                         hint="check MLFLOW_TRACKING_URI, or pass --no-mlflow") from None
