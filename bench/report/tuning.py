"""The tuning section: per runtime x model, the default against the best configuration found under the
budget, every configuration tried, and whether tuning changed the ranking.

Rankings are of capacities with intervals: two runtimes are ordered only when their intervals do not
overlap (the lower one's ci_high below the higher one's ci_low); otherwise they tie. Defaults "would have
ranked differently" when some pair is ordered one way by defaults and the other way (or tied) by bests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.knobs import config_label
from bench.report.figures import Chart, Styles, _figure, _image, _plain_log
from bench.report.format import DASH, cost_per_million, fmt_cost, fmt_rate
from bench.report.model import ReportData
from bench.results.schema import TunedConfig, TuningRecord


@dataclass(frozen=True)
class TuningRow:
    runtime: str
    model: str
    search: str
    default_config: str
    default_capacity: str
    best_config: str
    best_capacity: str
    gain: str
    best_cost: str
    best_price: str  # per million predictions at capacity, with the run's --price-per-core-hour
    tried: int
    skipped: int


@dataclass(frozen=True)
class FrontierPoint:
    """One configuration on the frontier figure: p99 at the runtime's common rate against capacity."""

    runtime: str
    config: str
    p99_ms: float
    capacity_rps: float
    best: bool


def tunings(data: ReportData) -> list[TuningRecord]:
    return [record for run in data.runs for record in run.results.tuning]


def price(data: ReportData) -> float | None:
    """The price per core-hour the runs were given (the first run's, in an overlay)."""
    return next((run.results.price_per_core_hour for run in data.runs if run.results.price_per_core_hour), None)


def capacity_text(tuned: TunedConfig) -> str:
    if tuned.capacity_rps is None:
        return "none"
    low = DASH if tuned.ci_low is None else fmt_rate(tuned.ci_low, unit="")
    high = "open" if tuned.ci_high is None else fmt_rate(tuned.ci_high, unit="")
    return f"{fmt_rate(tuned.capacity_rps, unit='')} ({low}{DASH}{high})"


def tuning_rows(records: Sequence[TuningRecord], price_per_core_hour: float | None = None) -> list[TuningRow]:
    rows = []
    for record in records:
        default, best = record.default, record.best
        gain = DASH
        if default.capacity_rps and best.capacity_rps:
            gain = f"{best.capacity_rps / default.capacity_rps - 1:+.0%}"
            if best.config != default.config and _order(best, default) == 0:
                gain += " (intervals overlap)"
        rows.append(TuningRow(
            runtime=record.runtime, model=record.model, search=record.search,
            default_config=config_label(default.config), default_capacity=capacity_text(default),
            best_config=config_label(best.config), best_capacity=capacity_text(best), gain=gain,
            best_cost=DASH if best.cpu_s_per_1000 is None else f"{best.cpu_s_per_1000:.3g} CPU-s",
            best_price=fmt_cost(cost_per_million(price_per_core_hour, record.server_cpus, best.capacity_rps)),
            tried=len(record.tried), skipped=len(record.skipped)))
    return rows


def frontier(records: Sequence[TuningRecord]) -> list[FrontierPoint]:
    return [FrontierPoint(record.runtime, config_label(tuned.config), tuned.p99_at_common_ms, tuned.capacity_rps,
                          tuned.config == record.best.config)
            for record in records for tuned in record.tried
            if tuned.p99_at_common_ms is not None and tuned.capacity_rps is not None]


def frontier_chart(data: ReportData) -> Chart | None:
    """Capacity against p99 at a common rate, one point per configuration tried (the best starred)."""
    records = [record for run in data.runs for record in run.results.tuning]
    points = frontier(records)
    if not points:
        return None
    styles = Styles(data)
    with _figure() as (figure, axes):
        ax = axes[0]
        for runtime in dict.fromkeys(point.runtime for point in points):
            mine = [point for point in points if point.runtime == runtime]
            colour = styles.of(runtime, 0)["color"]
            ax.scatter([p.p99_ms for p in mine], [p.capacity_rps for p in mine], color=colour, label=runtime, s=22)
            for point in mine:
                if point.best:
                    ax.scatter([point.p99_ms], [point.capacity_rps], color=colour, marker="*", s=140)
                ax.annotate(point.config, (point.p99_ms, point.capacity_rps), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xscale("log")  # p99 spans from a few ms to past the SLO
        _plain_log(ax.xaxis)
        image = _image(figure, ax, "p99 ms at the runtime's common rate (log scale)", "capacity req/s",
                       "Tuning frontier: each configuration tried")
    return Chart("frontier", "Tuning frontier", "", image,
                 "One point per configuration: up is more capacity within the SLO, left is lower p99 at the "
                 "runtime's common rate (a rate its default configuration passed at, at most half its capacity); "
                 "the star is the best.")


def _order(first: TunedConfig, second: TunedConfig) -> int:
    """+1: first clearly higher, -1: second clearly higher, 0: their intervals overlap."""
    if first.capacity_rps is None or second.capacity_rps is None:
        return (first.capacity_rps is not None) - (second.capacity_rps is not None)
    if first.ci_low is not None and second.ci_high is not None and first.ci_low > second.ci_high:
        return 1
    if second.ci_low is not None and first.ci_high is not None and second.ci_low > first.ci_high:
        return -1
    return 0


def ranking(records: Sequence[TuningRecord], which: str) -> list[list[str]]:
    """Runtimes of one model from highest to lowest capacity, runtimes that cannot be told apart grouped."""
    chosen = sorted(records, key=lambda r: -(_pick(r, which).capacity_rps or 0.0))
    groups: list[list[TuningRecord]] = []
    for record in chosen:
        if groups and any(_order(_pick(other, which), _pick(record, which)) == 0 for other in groups[-1]):
            groups[-1].append(record)
        else:
            groups.append([record])
    return [[r.runtime for r in group] for group in groups]


def _pick(record: TuningRecord, which: str) -> TunedConfig:
    return record.best if which == "best" else record.default


def ranking_verdict(records: Sequence[TuningRecord], price_per_core_hour: float | None = None) -> list[str]:
    """Per model: the best-against-best ranking, whether the defaults would have ranked otherwise, and what
    each runtime's best costs."""
    lines = []
    for model in sorted({r.model for r in records}):
        of_model = [r for r in records if r.model == model]
        best, default = ranking(of_model, "best"), ranking(of_model, "default")
        text = " > ".join(" = ".join(group) for group in best)
        changed = [f"{a.runtime} vs {b.runtime}" for i, a in enumerate(of_model) for b in of_model[i + 1:]
                   if _order(a.default, b.default) != _order(a.best, b.best)]
        if changed:
            lines.append(f"{model}: best against best {text}; defaults would have ranked differently "
                         f"({' > '.join(' = '.join(g) for g in default)}; changed: {', '.join(changed)})")
        else:
            lines.append(f"{model}: best against best {text}; the defaults rank the same")
        by_capacity = sorted(of_model, key=lambda r: -(r.best.capacity_rps or 0))
        costs = [_cost_text(r, price_per_core_hour) for r in by_capacity]
        if any(costs):
            lines.append(f"{model}: cost at the best configuration: {'; '.join(c for c in costs if c)}")
    return lines


def _cost_text(record: TuningRecord, price_per_core_hour: float | None) -> str:
    best = record.best
    parts = []
    if best.cpu_s_per_1000 is not None:
        parts.append(f"{best.cpu_s_per_1000:.3g} CPU-s per 1,000")
    money = cost_per_million(price_per_core_hour, record.server_cpus, best.capacity_rps)
    if money is not None:
        parts.append(f"{money:.3g} per million at {price_per_core_hour:g} per core-hour")
    if best.rss_mb_max is not None:
        parts.append(f"peak RSS {best.rss_mb_max:.0f} MB")
    return f"{record.runtime} {', '.join(parts)}" if parts else ""
