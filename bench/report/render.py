"""Render report.html and summary.md for one run (into its folder) or an overlay of several runs.

Works from saved run folders alone: a crashed or interrupted run renders what it finished, and a run
can be re-rendered at any time with a newer servebench.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError
from bench.report.html import render_html
from bench.report.markdown import render_markdown
from bench.report.model import load_runs
from bench.report.ranking import model_verdicts
from bench.report.search_verdict import with_search_verdicts

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.md"
OVERLAY_REPORT_FILE = "report-overlay.html"
OVERLAY_SUMMARY_FILE = "summary-overlay.md"


def _write(path: Path, text: str) -> None:
    """Write via a temporary file, so a reader never sees half a report."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise BenchError(f"cannot write {path}: {exc.strerror}", hint="choose a writable output folder") from None


def render_run_reports(run_dirs: Sequence[Path], out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write report.html and summary.md; returns their paths.

    One run: into its folder (or out_dir). Several: an overlay named report-overlay.html and
    summary-overlay.md, into out_dir or else the first run's folder."""
    data = load_runs([Path(d) for d in run_dirs])
    verdicts = with_search_verdicts(data, model_verdicts(data))
    target = Path(out_dir) if out_dir is not None else data.runs[0].folder
    names = (OVERLAY_REPORT_FILE, OVERLAY_SUMMARY_FILE) if data.overlay else (REPORT_FILE, SUMMARY_FILE)
    report, summary = target / names[0], target / names[1]
    _write(report, render_html(data, verdicts))
    _write(summary, render_markdown(data, verdicts, report_name=names[0]))
    return report, summary
