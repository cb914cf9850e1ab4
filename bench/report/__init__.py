"""The report layer: report.html, summary.md and MLflow runs, from saved run folders alone.

Data flows model (run folders as DataFrames) -> verdict, summary, figures, comparison, environment ->
html / markdown templates; mlflow_log logs the same run to the tracking store. Nothing here talks to a
serving runtime.
"""

from bench.report.mlflow_log import log_run
from bench.report.render import render_run_reports

__all__ = ["log_run", "render_run_reports"]
