"""The verdict of a run that searched (bench capacity, bench tune): runtimes ranked by capacity within the
SLO, each at its best configuration when tuned, two runtimes tied where their capacity intervals overlap.

The probes of a search are cells at rates the search chose, so a ranking of their p99 at one rate says
little; the capacity is the answer the run was for.
"""

from __future__ import annotations

from bench.knobs import config_label
from bench.report.format import fmt_rate
from bench.report.model import ReportData
from bench.report.ranking import ModelVerdict, Ranked
from bench.report.tuning import ranking_verdict
from bench.results.schema import CapacityRecord


def _tied(other: Ranked, leader: Ranked) -> bool:
    """Capacity intervals overlap: the other's upper end (open: unknown) reaches the leader's lower end."""
    return other is not leader and (other.ci_high is None or leader.ci_low is None or other.ci_high >= leader.ci_low)


def capacity_ranking(data: ReportData, model: str) -> list[Ranked]:
    """Highest capacity first: the best configuration per runtime (tuned), else each runtime's highest."""
    if data.overlay:
        return []
    run = data.runs[0]
    best: dict[str, CapacityRecord] = {}
    for record in run.results.capacity:
        if record.model == model and record.capacity_rps is not None and \
                (record.runtime not in best or record.capacity_rps > (best[record.runtime].capacity_rps or 0.0)):
            best[record.runtime] = record
    for tuned in run.results.tuning:  # bench tune's choice stands (a configuration over budget is never best)
        if tuned.model == model and tuned.best.capacity_rps is not None:
            best[tuned.runtime] = CapacityRecord(runtime=tuned.runtime, model=model, config=tuned.best.config,
                                                 slo=tuned.slo, capacity_rps=tuned.best.capacity_rps,
                                                 ci_low=tuned.best.ci_low, ci_high=tuned.best.ci_high, resolution=0)
    ordered = sorted(best.values(), key=lambda r: -(r.capacity_rps or 0.0))
    ranked = [Ranked(rank, r.runtime, r.runtime, run.run_id, config_label(r.config), r.capacity_rps or 0.0,
                     r.ci_low, r.ci_high) for rank, r in enumerate(ordered, start=1)]
    return [Ranked(r.rank, r.series, r.runtime, r.run_id, r.label, r.value, r.ci_low, r.ci_high,
                   tied_with_leader=_tied(r, ranked[0])) for r in ranked]


def search_recommendation(data: ReportData, model: str, ranked: list[Ranked], slo: str | None) -> str:
    top = ranked[0]
    tuned = any(t.model == model for run in data.runs for t in run.results.tuning)
    text = (f"Choose {top.series}: the highest capacity within {slo or 'the SLO'}, {fmt_rate(top.value)} "
            f"({'its best configuration, ' if tuned else ''}{top.label})")
    if len(ranked) > 1:
        runner = ranked[1]
        text += f", against {fmt_rate(runner.value)} for {runner.series}"
        if runner.tied_with_leader:
            text += ", though their capacity intervals overlap"
    text += "."
    if tuned:
        lines = [line for line in ranking_verdict([t for run in data.runs for t in run.results.tuning
                                                   if t.model == model]) if "defaults would" in line]
        if lines:
            text += " Defaults would have ranked differently: see the tuning section."
    return text


def with_search_verdicts(data: ReportData, verdicts: list[ModelVerdict]) -> list[ModelVerdict]:
    """A capacity or tuning run's verdicts: throughput is the capacity ranking, the recommendation says so."""
    for verdict in verdicts:
        searched = capacity_ranking(data, verdict.model)
        if searched:
            verdict.throughput = searched
            verdict.recommendation = search_recommendation(data, verdict.model, searched, verdict.slo)
    return verdicts
