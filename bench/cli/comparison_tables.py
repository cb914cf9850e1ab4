"""The tables of the searching and comparing commands: capacity (bench capacity), tuning (bench tune) and
rounds (bench run --rounds), each with the ranking lines the report shows too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from bench.results.schema import CapacityRecord, RoundsRecord, TuningRecord


def capacity_table(entries: Sequence[CapacityRecord]) -> Table:
    """Each runtime x model's capacity, its interval and what, if anything, limited the search."""
    from bench.knobs import config_label

    table = Table("runtime", "model", "config", "SLO", "capacity req/s", "interval", "limited by", "probes",
                  title="capacity")
    for entry in entries:
        low = "-" if entry.ci_low is None else f"{entry.ci_low:g}"
        high = "open" if entry.ci_high is None else f"{entry.ci_high:g}"
        table.add_row(entry.runtime, entry.model, escape(config_label(entry.config)),
                      f"{entry.slo.percentile} <= {entry.slo.ms:g} ms",
                      "none" if entry.capacity_rps is None else f"{entry.capacity_rps:g}", f"{low} to {high}",
                      entry.limited_by or "-", str(len(entry.probes)))
    return table


def tuning_table(records: Sequence[TuningRecord], price_per_core_hour: float | None = None) -> Group:
    """Default against best per runtime x model, then the ranking verdict."""
    from bench.report.tuning import ranking_verdict, tuning_rows

    table = Table("runtime", "model", "search", "default", "capacity req/s", "best", "capacity req/s", "gain",
                  "CPU-s / 1000 at best", "cost at capacity", "tried", "skipped",
                  title="tuning (capacity: estimate and interval)")
    for row in tuning_rows(records, price_per_core_hour):
        table.add_row(row.runtime, row.model, row.search, escape(row.default_config), row.default_capacity,
                      escape(row.best_config), row.best_capacity, row.gain, row.best_cost, row.best_price,
                      str(row.tried), str(row.skipped))
    return Group(table, *(Text(line) for line in ranking_verdict(records, price_per_core_hour)))


def rounds_table(records: Sequence[RoundsRecord]) -> Group:
    """Each runtime over the rounds, its interval and per-round figures, then the ranking and pair orders."""
    from bench.report.rounds import pair_orders, ranking_lines, rounds_rows

    table = Table("runtime", "model", "load", "percentile", "pooled ms", "95% interval", "per round", "valid rounds",
                  title="rounds (interleaved, order rotated each round)")
    for row in rounds_rows(records):
        table.add_row(row.runtime, row.model, escape(row.label), row.percentile, row.estimate, row.interval,
                      row.per_round, row.rounds)
    orders = [Text(f"{o.model} {o.label}: {o.faster} faster than {o.slower} in {o.held} of {o.compared} rounds")
              for o in pair_orders(records)]
    return Group(table, *(Text(line) for line in ranking_lines(records)), *orders)
