"""The capacity table: per runtime x model (x run in an overlay), the highest rate within the SLO that the
search found, its interval, and what limited the search when it did not end at a knee."""

from __future__ import annotations

from dataclasses import dataclass

from bench.knobs import config_label
from bench.report.format import DASH, cost_per_million, fmt_cost, fmt_rate
from bench.report.model import ReportData

LIMITS = {"generator": "the load generator (its CPU): the server's capacity is higher",
          "max rate": "the highest rate probed: capacity is at least this",
          "min rate": "not even the lowest rate probed met the SLO"}


@dataclass(frozen=True)
class CapacityRow:
    run_id: str
    runtime: str
    model: str
    config: str
    slo: str
    capacity: str
    interval: str
    limited_by: str
    probes: int
    cost: str  # per million predictions at capacity, with the run's --price-per-core-hour
    capacity_rps: float | None
    ci_low: float | None
    ci_high: float | None


def capacity_rows(data: ReportData) -> list[CapacityRow]:
    rows = []
    for run in data.runs:
        for entry in sorted(run.results.capacity, key=lambda e: (e.model, -(e.capacity_rps or 0.0), e.runtime)):
            low = DASH if entry.ci_low is None else fmt_rate(entry.ci_low, unit="")
            high = "open" if entry.ci_high is None else fmt_rate(entry.ci_high, unit="")
            rows.append(CapacityRow(
                run_id=run.run_id, runtime=entry.runtime, model=entry.model, config=config_label(entry.config),
                slo=f"{entry.slo.percentile} ≤ {entry.slo.ms:g} ms",
                capacity="none" if entry.capacity_rps is None else fmt_rate(entry.capacity_rps, unit=""),
                interval=f"{low}{DASH}{high}", limited_by=LIMITS.get(entry.limited_by or "", DASH),
                probes=len(entry.probes), cost=fmt_cost(cost_per_million(
                    run.results.price_per_core_hour, len(run.results.fairness.server_cpus) or 1, entry.capacity_rps)),
                capacity_rps=entry.capacity_rps, ci_low=entry.ci_low,
                ci_high=entry.ci_high))
    return rows
