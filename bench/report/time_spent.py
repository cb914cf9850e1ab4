"""Where the time goes: per profiled cell, the server's sampled time split into model, (de)serialisation,
HTTP, framework, other and unclassified (a stacked bar), the model's own cost beside the client's p50, and
the flame graph drawn when the run was made (an SVG in the run folder, inlined: no script, nothing fetched).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from bench.errors import BenchError
from bench.files import inside
from bench.report.format import fmt_ms, fmt_number
from bench.report.model import ReportData, cell_label
from bench.report.safe_svg import safe_svg
from bench.report.summary import serving_cpu_ms
from bench.results.schema import Cell
from bench.server_time.flamegraph import COLOURS

CATEGORIES = (("model", "model"), ("serialisation", "serialisation"), ("http", "HTTP"),
              ("framework", "framework"), ("other", "other"), ("unclassified", "unclassified"))


@dataclass(frozen=True)
class Segment:
    name: str
    label: str
    share: float
    percent: str
    colour: str


@dataclass(frozen=True)
class TimeSpentRow:
    run_id: str
    runtime: str
    model: str
    label: str
    segments: list[Segment]
    samples: int
    rate_hz: int | None
    processes: int
    note: str  # the model's cost against the client's p50, or the model's share of the sampled time
    serving_cpu_ms: str  # server CPU-ms per request outside the model: the framework's overhead
    flamegraph: Markup | None
    error: str | None


WAITS_COUNTED = ("py-spy sampled the container from the host, where a thread waiting in the container cannot be "
                 "told from a running one: waits count (an event loop's wait reads as HTTP); compare with other such "
                 "profiles only")


def _note(cell: Cell) -> str:
    shares = cell.server_profile.shares if cell.server_profile else None
    model_share = f"{100 * shares.model:.0f}% of the server's sampled time is the model" if shares else ""
    if shares and cell.server_profile is not None and cell.server_profile.waits_counted:
        model_share += f" ({WAITS_COUNTED})"
    if cell.model_cost is None or cell.latency.p50 is None:
        return model_share
    cost = cell.model_cost.predict_ms_p50
    return (f"of {cell.runtime}'s {fmt_ms(cell.latency.p50)} p50, {fmt_ms(cost)} is the model's own predict "
            f"(timed without a server); the rest, {fmt_ms(max(cell.latency.p50 - cost, 0.0))}, is serving"
            + (f"; {model_share}" if model_share else ""))


def _flamegraph(folder: Path, relative: str | None) -> Markup | None:
    """The SVG the run saved, inside the run folder only, rebuilt from an allow-list (bench.report.safe_svg)."""
    if relative is None:
        return None
    try:
        text = inside(folder, relative, "flame graph").read_text(errors="replace")
    except (OSError, BenchError):
        return None
    return safe_svg(text)


def time_spent_rows(data: ReportData) -> list[TimeSpentRow]:
    rows = []
    for run, cell, profile in data.cells_with(lambda cell: cell.server_profile):
        shares = profile.shares.model_dump() if profile.shares else {}
        segments = [Segment(name, label, shares[name], f"{100 * shares[name]:.1f}%",
                            COLOURS.get(None if name == "unclassified" else name, COLOURS[None]))
                    for name, label in CATEGORIES if shares]
        rows.append(TimeSpentRow(
            run_id=run.run_id, runtime=cell.runtime, model=cell.model, label=cell_label(cell), segments=segments,
            samples=profile.samples, rate_hz=profile.rate_hz, processes=profile.processes, note=_note(cell),
            serving_cpu_ms=fmt_number(serving_cpu_ms(
                cell.server.cpu_s_per_1000, profile.shares.model if profile.shares else None), 3),
            error=profile.error,
            flamegraph=_flamegraph(run.folder, profile.flamegraph)))
    return sorted(rows, key=lambda row: (row.model, row.label, row.runtime, row.run_id))
