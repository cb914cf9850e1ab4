"""The rounds section (bench run --rounds): each runtime's figure over the rounds with its interval, a
ranking that orders two runtimes only where their intervals separate, and how often each pairwise order
held round by round (lower latency first)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from bench.report.format import DASH
from bench.report.model import ReportData
from bench.results.schema import RoundsRecord


@dataclass(frozen=True)
class RoundsRow:
    runtime: str
    model: str
    label: str
    percentile: str
    estimate: str
    interval: str
    per_round: str
    rounds: str


@dataclass(frozen=True)
class PairOrder:
    model: str
    label: str
    faster: str
    slower: str
    held: int  # rounds in which faster's figure was lower
    compared: int  # rounds in which both had a figure


def rounds_of(data: ReportData) -> list[RoundsRecord]:
    return [record for run in data.runs for record in run.results.rounds]


def _ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def rounds_rows(records: Sequence[RoundsRecord]) -> list[RoundsRow]:
    ordered = sorted(records, key=lambda r: (r.model, r.label, r.estimate_ms if r.estimate_ms is not None else 1e18))
    return [RoundsRow(runtime=r.runtime, model=r.model, label=r.label, percentile=r.percentile,
                      estimate=_ms(r.estimate_ms), interval=f"{_ms(r.ci_low_ms)}{DASH}{_ms(r.ci_high_ms)}",
                      per_round=", ".join(_ms(v) for v in r.per_round_ms), rounds=f"{r.valid_rounds}/{r.rounds}")
            for r in ordered]


def _separated(lower: RoundsRecord, higher: RoundsRecord) -> bool:
    return lower.ci_high_ms is not None and higher.ci_low_ms is not None and lower.ci_high_ms < higher.ci_low_ms


def ranking_lines(records: Sequence[RoundsRecord]) -> list[str]:
    """Per model x load point: lowest first, '<' where the intervals separate, '=' (a tie) where not."""
    lines = []
    for key in sorted({(r.model, r.label) for r in records}):
        group = sorted((r for r in records if (r.model, r.label) == key and r.estimate_ms is not None),
                       key=lambda r: r.estimate_ms or 0.0)
        if not group:
            continue
        text = group[0].runtime
        for before, after in itertools.pairwise(group):
            text += f" {'<' if _separated(before, after) else '='} {after.runtime}"
        ties = "; '=' is a tie: the intervals overlap" if "=" in text else ""
        lines.append(f"{key[0]} {key[1]}, {group[0].percentile} over {group[0].rounds} rounds: {text}{ties}")
    return lines


def pair_orders(records: Sequence[RoundsRecord]) -> list[PairOrder]:
    """For each pair of runtimes of one model x load point: in how many rounds the usually faster one was."""
    orders = []
    for key in sorted({(r.model, r.label) for r in records}):
        group = [r for r in records if (r.model, r.label) == key]
        for index, first in enumerate(group):
            for second in group[index + 1:]:
                both = [(a, b) for a, b in zip(first.per_round_ms, second.per_round_ms, strict=False)
                        if a is not None and b is not None]
                first_lower = sum(1 for a, b in both if a < b)
                if first_lower * 2 >= len(both):
                    orders.append(PairOrder(key[0], key[1], first.runtime, second.runtime, first_lower, len(both)))
                else:
                    orders.append(PairOrder(key[0], key[1], second.runtime, first.runtime, len(both) - first_lower,
                                            len(both)))
    return orders
