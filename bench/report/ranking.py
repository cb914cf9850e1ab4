"""The verdict: per model, which runtime to choose, how firmly, and what could make the answer wrong.

Runtimes (or runtime x run in an overlay) are ranked twice: by p99 at the common load (the load point
every runtime was validly measured at, the highest such) and by the highest throughput that still met
the SLO. Only valid cells are ranked; invalid and failed cells become caveats. A runtime that kept up with
the highest load it was offered (nothing dropped or queued, its window's requests completed) is known only
to reach that load: runtimes that kept up with the same load are tied, whatever their counts (which are
the arrival draw's), and rank ahead of those that fell behind; the ranking says so rather than crowning a
winner among equals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.report.format import fmt_ms, fmt_rate
from bench.report.model import ReportData, as_float, records

WIDE_CI_RATIO = 2.0  # a p99 whose CI spans more than a factor of two cannot rank tails firmly
FEW_FOR_P999 = 1000  # below this many requests p99.9 is little more than the maximum
FINGERPRINT_KEYS = ("host", "cpu_model", "cores", "python", "git_sha")
KEPT_UP_SHARE = 0.95  # of a window's scheduled requests completed inside it: below, the server fell behind


@dataclass(frozen=True)
class Ranked:
    rank: int
    series: str
    runtime: str
    run_id: str
    label: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    lower_bound: bool = False  # throughput: met the SLO at the highest load measured; capacity is higher
    tied_with_leader: bool = False


@dataclass
class ModelVerdict:
    model: str
    common_load: str | None
    latency: list[Ranked] = field(default_factory=list)
    throughput: list[Ranked] = field(default_factory=list)
    slo: str | None = None
    recommendation: str = ""
    caveats: list[str] = field(default_factory=list)


def load_key(cells: pd.DataFrame) -> pd.Series:
    """Which load point a cell measured: scenario plus label (the label carries rate, users and batch)."""
    return cells["scenario"].astype(str) + " " + cells["label"].astype(str)


def common_load(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of one model at the load point most series were validly measured at.

    Ties go to the highest offered load (it separates runtimes best), then the smallest batch. Falls
    back to all cells when none is valid, so figures still show what was measured."""
    if cells.empty:
        return cells
    pool = cells.loc[cells["valid"]]
    if pool.empty:
        pool = cells.loc[cells["requests"] > 0]
    if pool.empty:
        return pool
    keyed = pool.assign(_key=load_key(pool))
    points = keyed.groupby("_key").agg(series=("series", "nunique"), offered=("offered_rps", "max"),
                                       users=("users", "max"), batch=("batch_size", "min"))
    points = points.fillna({"offered": -1.0, "users": -1.0})
    points = points.sort_values(["series", "offered", "users", "batch"], ascending=[False, False, False, True])
    chosen: pd.DataFrame = keyed.loc[keyed["_key"] == points.index[0]].drop(columns="_key")
    return chosen


def focus_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Every measured cell (invalid ones too) at the common load: what the figures draw."""
    chosen = common_load(cells)
    if chosen.empty:
        return chosen
    measured = cells.loc[cells["requests"] > 0]
    focus: pd.DataFrame = measured.loc[load_key(measured) == load_key(chosen).iloc[0]]
    return focus


def _latency_ranking(focus: pd.DataFrame) -> list[Ranked]:
    ranked = focus.dropna(subset=["p99_ms"]).sort_values("p99_ms")
    rows: list[Ranked] = []
    for rank, row in enumerate(records(ranked), start=1):
        rows.append(Ranked(rank, str(row["series"]), str(row["runtime"]), str(row["run_id"]), str(row["label"]),
                           float(row["p99_ms"]), as_float(row["p99_ci_low"]), as_float(row["p99_ci_high"])))
    if rows:
        leader = rows[0]
        rows = [_tie(each, leader) for each in rows]
    return rows


def _rounds_ranking(data: ReportData, model: str, focus: pd.DataFrame) -> list[Ranked]:
    """bench run --rounds: rank the rounds combined (one entry per runtime, its pooled p99 and the two-level
    interval) rather than each round's cell; a single run only (an overlay ranks cells)."""
    if data.overlay or focus.empty:
        return []
    run = data.runs[0]
    label = str(focus["label"].iloc[0])
    pooled = sorted((r for r in run.results.rounds if r.model == model and r.label == label
                     and r.percentile == "p99" and r.estimate_ms is not None), key=lambda r: r.estimate_ms or 0.0)
    rows = [Ranked(rank, record.runtime, record.runtime, run.run_id, f"{label} ({record.rounds} rounds)",
                   record.estimate_ms or 0.0, record.ci_low_ms, record.ci_high_ms)
            for rank, record in enumerate(pooled, start=1)]
    return [_tie(each, rows[0]) for each in rows] if rows else []


def _tie(each: Ranked, leader: Ranked) -> Ranked:
    if each is leader or None in (each.ci_low, leader.ci_high):
        return each
    assert each.ci_low is not None and leader.ci_high is not None
    return Ranked(each.rank, each.series, each.runtime, each.run_id, each.label, each.value, each.ci_low,
                  each.ci_high, tied_with_leader=each.ci_low <= leader.ci_high)


def kept_up(row: dict[str, Any]) -> bool:
    """Whether an open-loop cell's server kept up with its schedule: nothing dropped or sent late for want of a
    free connection, and at least KEPT_UP_SHARE of the window's scheduled requests completed in it. Among
    cells that kept up at one offered load, throughput is the arrival draw's, not the server's."""
    duration, throughput = as_float(row["duration_s"]), as_float(row["throughput_rps"])
    offered = as_float(row["offered_rps"])
    if row["loop"] == "closed" or offered is None or not row["requests"] or throughput is None:
        return False
    scheduled_rps = float(row["requests"]) / duration if duration else offered  # a file without its duration
    return not (as_float(row["dropped"]) or 0) and not (as_float(row["queued"]) or 0) \
        and throughput >= KEPT_UP_SHARE * scheduled_rps


def _throughput_ranking(cells: pd.DataFrame) -> list[Ranked]:
    """Each series' highest throughput within the SLO. A series that kept up with the highest load it was
    offered is only known to reach that load: such series rank by the offered load, tied where it is the same,
    ahead of those that fell behind, which rank by what they completed."""
    valid = cells.loc[cells["valid"]].dropna(subset=["rows_per_s"])
    within = valid.loc[valid["slo_met"].map(lambda met: met is not False).astype(bool)]  # unknown SLO: counts
    if within.empty:
        return []
    best = within.sort_values(["rows_per_s", "p99_ms"], ascending=[False, True]).drop_duplicates("series")
    highest_offered = cells.loc[cells["requests"] > 0].groupby("series")["offered_rps"].max()
    entries = []
    for row in records(best):
        top = as_float(highest_offered.get(row["series"]))
        offered = as_float(row["offered_rps"])
        bounded = offered is not None and top is not None and offered >= top and kept_up(row)
        sustained = (offered or 0.0) * int(row["batch_size"] or 1) if bounded else float(row["rows_per_s"])
        entries.append((bounded, sustained, float(row["rows_per_s"]), row))
    entries.sort(key=lambda entry: (entry[1], entry[0]), reverse=True)
    leader_bounded, leader_sustained = entries[0][0], entries[0][1]
    ranked = []
    for position, (bounded, sustained, value, row) in enumerate(entries, start=1):
        tied = position > 1 and leader_bounded and bounded and sustained == leader_sustained
        ranked.append(Ranked(1 if tied else position, str(row["series"]), str(row["runtime"]), str(row["run_id"]),
                             str(row["label"]), value, lower_bound=bounded, tied_with_leader=tied))
    return ranked  # those tied share the leader's rank: nothing orders them


def _recommendation(model: str, verdict: ModelVerdict) -> str:
    """One line a reader can act on, hedged exactly as far as the data demands."""
    if not verdict.latency:
        return f"No recommendation for {model}: no valid measurement (see the caveats)."
    fast = verdict.latency[0]
    runner = verdict.latency[1] if len(verdict.latency) > 1 else None
    text = f"Choose {fast.series}: lowest p99 at {verdict.common_load} ({fmt_ms(fast.value)}"
    text += f" vs {fmt_ms(runner.value)} for {runner.series})" if runner else ")"
    if runner and runner.tied_with_leader:
        text += ", though the p99 confidence intervals overlap"
    if not verdict.throughput:
        return text + "; no runtime met the SLO."
    top = verdict.throughput[0]
    if top.lower_bound and len(verdict.throughput) == 1:
        return text + "; it met the SLO at the highest load measured (capacity not reached)."
    tied = [top.series] + [r.series for r in verdict.throughput if r.tied_with_leader]
    if top.lower_bound and len(tied) > 1:
        who = "every runtime" if len(tied) == len(verdict.throughput) else ", ".join(tied)
        return text + f"; {who} kept up with the highest load measured within the SLO, so throughput does not " \
                      "separate them (a sweep scenario finds capacity)."
    if top.series == fast.series:
        return text + f", and the highest throughput within the SLO ({fmt_rate(top.value)})."
    return text + f"; {top.series} reached the highest throughput within the SLO ({fmt_rate(top.value)})."


def _cost_sentence(focus: pd.DataFrame, verdict: ModelVerdict) -> str:
    """What each ranked runtime's predictions cost the server at the common load (CPU-seconds per 1,000,
    the median over its cells there), in ranking order; empty when no cell recorded it."""
    if focus.empty or "server_cpu_s_per_1000" not in focus:
        return ""
    costs = focus.dropna(subset=["server_cpu_s_per_1000"]).groupby("series")["server_cpu_s_per_1000"].median()
    parts = [f"{entry.series} {costs[entry.series]:.3g}" for entry in verdict.latency if entry.series in costs]
    return f" Server CPU-seconds per 1,000 predictions there: {', '.join(parts)}." if parts else ""


def _caveats(data: ReportData, cells: pd.DataFrame, verdict: ModelVerdict) -> list[str]:
    caveats = []
    for row in records(cells.loc[~cells["valid"]]):
        reasons = "; ".join(row["invalid_reasons"]) or "no reason recorded"
        caveats.append(f"{str(row['status']).upper()}: {row['series']} {row['scenario']} {row['label']}: {reasons}")
    for entry in verdict.latency:
        if entry.ci_low and entry.ci_high and entry.ci_high / entry.ci_low > WIDE_CI_RATIO:
            caveats.append(f"{entry.series}: p99 confidence interval {fmt_ms(entry.ci_low)} to "
                           f"{fmt_ms(entry.ci_high)} is wide; a longer run (--length full) would rank the tails "
                           "more firmly.")
    few = cells.loc[cells["valid"] & (cells["requests"] < FEW_FOR_P999)]
    if not few.empty:
        caveats.append(f"{len(few)} valid cell(s) have fewer than {FEW_FOR_P999} requests: their p99.9 is close "
                       "to the single slowest request.")
    return caveats


def run_caveats(data: ReportData) -> list[str]:
    """Caveats about the runs rather than one model: unfinished runs, shared CPUs, overlays of unlike runs."""
    caveats = []
    for run in data.runs:
        if run.status == "interrupted":
            caveats.append(f"run {run.run_id} was interrupted: cells may be missing.")
        elif run.status == "failed":
            caveats.append(f"run {run.run_id} failed part way (see its run.log): cells may be missing.")
        elif run.status == "running":
            caveats.append(f"run {run.run_id} never finished (it crashed, or is still running): cells may be missing.")
        if run.results.fairness.cpu_shared:
            caveats.append(f"run {run.run_id}: the load generator and the server shared CPUs.")
    if data.overlay:
        for key in FINGERPRINT_KEYS:
            values = {str(getattr(run.results.environment, key)) for run in data.runs}
            if len(values) > 1:
                caveats.append(f"the overlaid runs differ in {key}: {', '.join(sorted(values))}.")
        lengths = {str(run.results.profile.name if run.results.profile else None) for run in data.runs}
        if len(lengths) > 1:
            caveats.append(f"the overlaid runs used different run lengths: {', '.join(sorted(lengths))}.")
    return caveats


def model_verdicts(data: ReportData) -> list[ModelVerdict]:
    verdicts = []
    for model in data.models:
        cells = data.cells.loc[data.cells["model"] == model]
        focus = common_load(cells.loc[cells["valid"]])
        load = None if focus.empty else f"{focus['scenario'].iloc[0]} {focus['label'].iloc[0]}"
        verdict = ModelVerdict(model=model, common_load=load)
        verdict.latency = _rounds_ranking(data, model, focus) or _latency_ranking(focus)
        verdict.throughput = _throughput_ranking(cells)
        slo = cells.dropna(subset=["slo_ms"])
        if not slo.empty:
            verdict.slo = f"{slo['slo_percentile'].iloc[0] or 'p99'} ≤ {fmt_ms(float(slo['slo_ms'].iloc[0]))}"
        elif verdict.throughput:
            verdict.slo = "no SLO recorded: every valid cell counts"
        verdict.recommendation = _recommendation(model, verdict) + _cost_sentence(focus, verdict)
        verdict.caveats = _caveats(data, cells, verdict)
        verdicts.append(verdict)
    return verdicts
