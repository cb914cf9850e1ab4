"""After a run: report.html and summary.md, the CI step summary, and the MLflow run.

Called once results.json is on disk, so nothing here may lose them: every failure becomes a warning in
the returned Published, and the caller decides how to show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.report.mlflow_log import log_run
from bench.report.render import render_run_reports

STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class Published:
    """What was written, and what could not be (one line each)."""

    report: Path | None = None
    summary: Path | None = None
    mlflow_run_id: str | None = None
    warnings: tuple[str, ...] = ()


def publish(run_dir: Path, mlflow: bool) -> Published:
    """Render the run's report, append its summary to $GITHUB_STEP_SUMMARY when set, then log it to MLflow.
    A report that cannot be rendered stops here (MLflow would render it again and fail the same way)."""
    try:
        report, summary = render_run_reports([run_dir])
    except BenchError as exc:
        return Published(warnings=(f"report not rendered: {exc.message} (hint: bench report {run_dir})",))
    warnings: list[str] = []
    step_summary = os.environ.get(STEP_SUMMARY_VARIABLE)
    if step_summary:
        try:
            with open(step_summary, "a") as sink:
                sink.write(summary.read_text())
        except OSError as exc:
            warnings.append(f"not appended to ${STEP_SUMMARY_VARIABLE} ({step_summary}): {exc.strerror}")
    run_id = None
    if mlflow:
        try:
            run_id = log_run(run_dir)
        except BenchError as exc:
            warnings.append(f"not logged to MLflow: {exc.message}")
    return Published(report, summary, run_id, tuple(warnings))
