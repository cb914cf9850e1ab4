"""The report's figures: matplotlib (Agg, no pyplot state) rendered to SVG data URIs for a self-contained page.

Each function takes one model's cells and returns a Chart; when the run holds no data for a figure (no
sweep, one batch size, no raw samples, an old results file) the Chart carries no image and a note that
says why, so the report shows the gap instead of an empty plot. Colours follow the runtime and line
styles the run, so an overlay reads as "same colour, other run".
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench.report.model import ReportData, Row, as_float, as_int, records
from bench.report.ranking import focus_cells

SPECTRUM_POINTS = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
SPECTRUM_COLUMNS = {"p50": "p50_ms", "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms", "p99.9": "p999_ms"}
CDF_MAX_POINTS = 1500  # per line: enough for a smooth curve, small enough for an inline SVG
LINE_STYLES = ["-", "--", ":", "-."]
PALETTE = [matplotlib.colormaps["tab10"](i) for i in range(10)]
RC: dict[Any, Any] = {"svg.hashsalt": "servebench", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 10,
      "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    model: str
    image: str | None  # data:image/svg+xml;base64,... or None when skipped
    note: str

    @property
    def skipped(self) -> bool:
        return self.image is None


@dataclass(frozen=True)
class Drawing:
    """What a figure function drew for one model: the image, or None when the data cannot draw it, and the
    note under it (or why it is missing). The figure's key and title are FIGURES' to give."""

    image: str | None
    note: str


class LineStyle(TypedDict):
    """Keyword arguments of matplotlib's plot(): one runtime's colour, one run's line style."""

    color: str | tuple[float, float, float, float]
    linestyle: str


class Styles:
    """A colour per runtime (stable across the report) and a line style per run."""

    def __init__(self, data: ReportData) -> None:
        self.colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(data.runtimes)}

    def of(self, runtime: object, run_index: object) -> LineStyle:
        index = as_int(run_index)
        return LineStyle(color=self.colours.get(str(runtime), "black"), linestyle=LINE_STYLES[index % len(LINE_STYLES)])


@contextmanager
def _figure(rows: int = 1, cols: int = 1, height: float = 3.4) -> Iterator[tuple[Figure, list[Axes]]]:
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(7.6, height), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, cols, squeeze=False)
        yield figure, [ax for row in axes for ax in row]


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    with matplotlib.rc_context(RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(figure: Figure, ax: Axes, x_label: str, y_label: str, title: str) -> str:
    """Label a one-panel figure, add the legend, and render it."""
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    _legend(figure, ax)
    return _data_uri(figure)


def _legend(figure: Figure, axes: Axes) -> None:
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        columns = max(1, min(4, len(handles), 110 // max(len(label) for label in labels)))  # long overlay labels
        figure.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8, frameon=False)


def _name(row: Row) -> str:
    return str(row["series"]) + ("" if row["status"] == "valid" else f" ({row['status']})")


def _plain_log(axis: Any) -> None:
    """Log-axis labels as plain numbers (2, 5, 10, 20 ms), not 2x10^0."""
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(
        lambda value, _pos: f"{value:g}" if f"{value:.0e}"[0] in "25" else ""))


def _log_y(ax: Axes) -> None:
    """A log latency axis labelled in plain milliseconds."""
    ax.set_yscale("log")
    _plain_log(ax.yaxis)


def _at(focus: pd.DataFrame) -> str:
    """The load point a figure shows: scenario and label of its cells."""
    return f"{focus['scenario'].iloc[0]} {focus['label'].iloc[0]}"


def _skip(why: str) -> Drawing:
    return Drawing(None, why)


def _one_panel(figure: Figure, ax: Axes, labels: tuple[str, str, str], note: str) -> Drawing:
    """A one-panel figure labelled (x, y, title), rendered, with its note."""
    return Drawing(_image(figure, ax, *labels), note)


def _focus(data: ReportData, model: str) -> pd.DataFrame:
    """The model's cells at the common load (bench.report.ranking), runtime by runtime."""
    return _ordered(focus_cells(data.cells.loc[data.cells["model"] == model]))


def _ordered(cells: pd.DataFrame) -> pd.DataFrame:
    return cells.sort_values(["runtime", "run_index"], kind="stable")


def _latencies(samples: pd.DataFrame, row: Row) -> np.ndarray:
    mine = (samples["run_id"] == row["run_id"]) & (samples["cell_id"] == row["cell_id"])
    values: np.ndarray = samples.loc[mine, "latency_ms"].to_numpy(dtype=float)
    return values


def _nines(percentile: float | np.ndarray) -> Any:
    """Position on a 'number of nines' axis: p90 -> 1, p99 -> 2, p99.9 -> 3."""
    return -np.log10(1.0 - np.asarray(percentile) / 100.0)


def percentile_spectrum(data: ReportData, model: str, styles: Styles) -> Drawing:
    """p50 to p99.9 on a nines axis: the whole tail at once, from raw samples where they were saved."""
    focus = _focus(data, model).dropna(subset=["p50_ms"])
    if focus.empty:
        return _skip("No cell of this model has latency figures.")
    samples = data.samples(focus)
    with _figure() as (figure, (ax,)):
        for row in records(focus):
            style = styles.of(row["runtime"], row["run_index"])
            points = {name: as_float(row[column]) for name, column in SPECTRUM_COLUMNS.items()}
            known = {name: value for name, value in points.items() if value is not None}
            latencies = _latencies(samples, row)
            if len(latencies) >= 20:
                grid = np.linspace(_nines(50.0), _nines(99.9), 160)
                ax.plot(grid, np.percentile(latencies, 100.0 * (1.0 - 10.0 ** -grid)), label=_name(row),
                        **style)
                ax.plot([_nines(SPECTRUM_POINTS[n]) for n in known], list(known.values()), "o",
                        color=style["color"], markersize=3.5)
            else:
                ax.plot([_nines(SPECTRUM_POINTS[n]) for n in known], list(known.values()), marker="o",
                        markersize=3.5, label=_name(row), **style)
            for name in ("p50", "p99"):
                low, high = as_float(row[f"{name}_ci_low"]), as_float(row[f"{name}_ci_high"])
                if low is not None and high is not None:
                    ax.vlines(_nines(SPECTRUM_POINTS[name]), low, high, color=style["color"], linewidth=3, alpha=0.35)
        _log_y(ax)
        ax.set_xticks([_nines(v) for v in SPECTRUM_POINTS.values()], list(SPECTRUM_POINTS))
        return _one_panel(figure, ax, ("percentile", "latency (ms, log scale)",
                                       f"{model}: latency by percentile at {_at(focus)}"),
                          "Lines from raw samples, dots are the reported percentiles, bars the 95% confidence "
                          "intervals of p50 and p99 (binomial order statistics).")


def latency_cdf(data: ReportData, model: str, styles: Styles) -> Drawing:
    """The empirical distribution of every measured request at the common load."""
    focus = _focus(data, model)
    samples = data.samples(focus) if not focus.empty else pd.DataFrame()
    if samples.empty:
        return _skip("No raw samples were saved for this model (failed cells, or an older results file without "
                     "samples/*.parquet).")
    with _figure() as (figure, (ax,)):
        for row in records(focus):
            latencies = np.sort(_latencies(samples, row))
            if len(latencies) == 0:
                continue
            fraction = np.arange(1, len(latencies) + 1) / len(latencies)
            keep = np.unique(np.linspace(0, len(latencies) - 1, min(len(latencies), CDF_MAX_POINTS)).astype(int))
            ax.step(latencies[keep], fraction[keep], where="post", label=f"{_name(row)} n={len(latencies):,}",
                    **styles.of(row["runtime"], row["run_index"]))
        for level in (0.5, 0.99):
            ax.axhline(level, color="grey", linewidth=0.7, linestyle=":")
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.set_ylim(0, 1.01)
        return _one_panel(figure, ax, ("latency (ms, log scale)", "fraction of requests",
                                       f"{model}: latency CDF at {_at(focus)}"),
                          "Every successful request in the measurement window (warm-up excluded); dotted lines "
                          "mark p50 and p99.")


def latency_vs_load(data: ReportData, model: str, styles: Styles) -> Drawing:
    """The latency-throughput curve of a sweep, against the SLO: where each runtime stops meeting it."""
    cells = data.cells.loc[(data.cells["model"] == model) & (data.cells["requests"] > 0)]
    cells = cells.loc[cells["batch_size"] == cells["batch_size"].min()] if not cells.empty else cells
    open_loop = cells.dropna(subset=["offered_rps"])
    if open_loop["offered_rps"].nunique() >= 2:
        points, x_column, x_label = open_loop, "offered_rps", "offered load (requests/s)"
    elif cells.dropna(subset=["users"])["users"].nunique() >= 2:
        points, x_column, x_label = cells.dropna(subset=["users"]), "throughput_rps", "throughput (requests/s)"
    else:
        return _skip("Each runtime was measured at one load only; a sweep scenario (e.g. --scenario sweep) "
                     "draws this curve.")
    percentile = str(points["slo_percentile"].dropna().iloc[0]) if points["slo_percentile"].notna().any() else "p99"
    column = f"{percentile}_ms" if f"{percentile}_ms" in points else "p99_ms"
    with _figure() as (figure, (ax,)):
        for (_series, _run), group in _ordered(points).groupby(["series", "run_index"], sort=False):
            group = group.sort_values(x_column)
            style = styles.of(group["runtime"].iloc[0], group["run_index"].iloc[0])
            ax.plot(group[x_column], group[column], label=str(group["series"].iloc[0]), **style)
            valid = group.loc[group["valid"]]
            ax.plot(valid[x_column], valid[column], "o", color=style["color"], markersize=4)
            invalid = group.loc[~group["valid"]]
            ax.plot(invalid[x_column], invalid[column], "o", markerfacecolor="white", color=style["color"],
                    markersize=5)
        slo = points["slo_ms"].dropna()
        if not slo.empty:
            ax.axhline(float(slo.iloc[0]), color="#c0392b", linestyle="--", linewidth=1,
                       label=f"SLO: {percentile} ≤ {float(slo.iloc[0]):g} ms")
        _knees(ax, data, model, styles)
        _log_y(ax)
        return _one_panel(figure, ax, (x_label, f"{percentile} latency (ms, log scale)",
                                       f"{model}: {percentile} latency vs load"),
                          "Filled dots are valid cells, hollow dots invalid ones; the dashed red line is the "
                          "scenario's SLO; a dotted line marks a capacity search's knee, its interval shaded.")


def _knees(ax: Axes, data: ReportData, model: str, styles: Styles) -> None:
    """Each capacity search's knee: a dotted line at the capacity, its interval shaded."""
    for run in data.runs:
        for entry in run.results.capacity:
            if entry.model != model or entry.capacity_rps is None:
                continue
            colour = styles.of(entry.runtime, run.index)["color"]
            ax.axvline(entry.capacity_rps, color=colour, linestyle=":", linewidth=1.2)
            if entry.ci_low is not None and entry.ci_high is not None:
                ax.axvspan(entry.ci_low, entry.ci_high, color=colour, alpha=0.08)


def _focus_series(data: ReportData, model: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    focus = _focus(data, model)
    series = data.timeseries.merge(focus[["run_id", "cell_id", "run_index", "status"]], on=["run_id", "cell_id"])
    return focus, series.sort_values(["runtime", "run_index", "t"], kind="stable")


def _warmup(ax: Axes, series: pd.DataFrame) -> None:
    first = series["t"].min()
    if pd.notna(first) and first < 0:
        ax.axvspan(float(first), 0, color="grey", alpha=0.12, linewidth=0)


def _per_second(series: pd.DataFrame, styles: Styles, top: Axes, top_column: str, bottom: Axes,
                bottom_column: str) -> None:
    """Two per-second series of every runtime, one above the other, the warm-up shaded on both."""
    for (_series, _run), group in series.groupby(["series", "run_index"], sort=False):
        style = styles.of(group["runtime"].iloc[0], group["run_index"].iloc[0])
        top.plot(group["t"], group[top_column], label=_name(records(group.head(1))[0]), **style)
        bottom.plot(group["t"], group[bottom_column], **style)
    for ax in (top, bottom):
        _warmup(ax, series)
    top.set_ylim(bottom=0)


def throughput_over_time(data: ReportData, model: str, styles: Styles) -> Drawing:
    """Per-second successful requests and p99: stalls, drifts and warm-up effects a summary hides."""
    focus, series = _focus_series(data, model)
    series = series.loc[series["coverage"] > 0.25]
    if series.empty:
        return _skip("No per-second series recorded for this model (an older results file or failed cells).")
    served = "served_rps" if series["served_rps"].notna().any() else "ok_rps"  # older files: by scheduled second
    with _figure(2, 1, height=4.8) as (figure, (top, bottom)):
        _per_second(series, styles, top, served, bottom, "p99_ms")
        offered = series.loc[series["cell_id"] == series["cell_id"].iloc[0]]  # one load point: one offered pattern
        top.plot(offered["t"], offered["offered_rps"], color="0.45", linestyle="--", linewidth=1.0,
                 label="offered (scheduled)")
        top.set_ylabel("successful req/s")
        _log_y(bottom)
        bottom.set_ylabel("p99 per second (ms)")
        bottom.set_xlabel("seconds since the measurement started (shaded: warm-up, discarded)")
        top.set_title(f"{model}: per-second throughput and p99 at {_at(focus)}")
        _legend(figure, top)
        image = _data_uri(figure)
    return Drawing(image, "Dashed: the requests scheduled in each second (the offered pattern); lines: successful "
                   "responses by the second they arrived in (by scheduled second for older runs); p99 by scheduled "
                   "second. Partial first and last seconds are scaled to a full second.")


def resources_over_time(data: ReportData, model: str, styles: Styles) -> Drawing:
    """Server CPU and resident memory once a second: saturation, leaks, a cold start still settling."""
    focus, series = _focus_series(data, model)
    series = series.dropna(subset=["server_cpu_percent", "server_rss_mb"], how="all")
    if series.empty:
        return _skip("No server CPU or memory samples recorded for this model.")
    with _figure(2, 1, height=4.8) as (figure, (top, bottom)):
        _per_second(series, styles, top, "server_cpu_percent", bottom, "server_rss_mb")
        top.set_ylabel("server CPU (% of one core)")
        bottom.set_ylabel("server RSS (MB)")
        bottom.set_xlabel("seconds since the measurement started (shaded: warm-up)")
        top.set_title(f"{model}: server resources at {_at(focus)}")
        _legend(figure, top)
        image = _data_uri(figure)
    return Drawing(image, "Sampled once a second from the server's whole process tree.")


def batch_effect(data: ReportData, model: str, styles: Styles) -> Drawing:
    """Request latency and the latency per row against batch size: what batching buys and costs."""
    cells = data.cells.loc[(data.cells["model"] == model)].dropna(subset=["p50_ms"])
    if cells["batch_size"].nunique() < 2:
        return _skip("One batch size only; the batch scenario (--scenario batch) draws this.")
    # one cell per series and batch size: the lightest load measured, where batching is least confounded
    cells = _ordered(cells.assign(_load=cells["offered_rps"].fillna(cells["users"]).fillna(0.0))
                     .sort_values(["_load"]).drop_duplicates(["series", "batch_size"]))
    with _figure(1, 2, height=3.4) as (figure, (left, right)):
        for (_series, _run), group in cells.groupby(["series", "run_index"], sort=False):
            group = group.sort_values("batch_size")
            style = styles.of(group["runtime"].iloc[0], group["run_index"].iloc[0])
            left.plot(group["batch_size"], group["p99_ms"], marker="o", markersize=3.5,
                      label=str(group["series"].iloc[0]), **style)
            right.plot(group["batch_size"], group["p50_ms"] / group["batch_size"], marker="o", markersize=3.5, **style)
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
            _log_y(ax)
            ax.set_xlabel("rows per request")
        left.set_ylabel("p99 per request (ms)")
        right.set_ylabel("p50 per row (ms)")
        left.set_title(f"{model}: request latency")
        right.set_title("latency per row")
        _legend(figure, left)
        image = _data_uri(figure)
    return Drawing(image, "One cell per runtime and batch size, at the lightest load measured.")


Draw = Callable[[ReportData, str, Styles], Drawing]
FIGURES: tuple[tuple[str, str, Draw], ...] = (  # key (the page's anchor), title, and what draws it
    ("spectrum", "Latency percentile spectrum", percentile_spectrum),
    ("cdf", "Latency CDF", latency_cdf),
    ("load", "Latency vs offered load", latency_vs_load),
    ("timeline", "Throughput and p99 over time", throughput_over_time),
    ("resources", "Server CPU and memory over time", resources_over_time),
    ("batch", "Batch-size effect", batch_effect),
)


def model_charts(data: ReportData) -> dict[str, list[Chart]]:
    """Every figure for every model, in the issue's order; skipped ones keep their place and say why."""
    styles = Styles(data)
    return {model: [_chart(key, title, model, draw(data, model, styles)) for key, title, draw in FIGURES]
            for model in data.models}


def _chart(key: str, title: str, model: str, drawing: Drawing) -> Chart:
    return Chart(key, title, model, drawing.image, drawing.note)
