"""A sweep's curve per runtime, model and batch size, and the highest load whose SLO was met."""

from __future__ import annotations

from bench.results.schema import Cell, Sweep, SweepPoint


def sweep_summary(cells: tuple[Cell, ...]) -> tuple[Sweep, ...]:
    groups: dict[tuple[str, str, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.runtime, cell.model, cell.batch_size), []).append(cell)
    summary = []
    for (runtime, model, batch), members in groups.items():
        points = [SweepPoint(label=c.label, offered_rps=c.load.offered_rps, users=c.load.users,
                             throughput_rps=c.rates.throughput_rps, p99_ms=c.latency.p99, slo_met=c.slo_met,
                             valid=c.validity.valid) for c in members]
        passing = [p for p in points if p.slo_met and p.valid]
        best = max(passing, key=lambda p: p.offered_rps or p.throughput_rps or 0, default=None)
        summary.append(Sweep(runtime=runtime, model=model, batch_size=batch, points=tuple(points),
                             max_load_within_slo=best.label if best else None,
                             max_throughput_within_slo_rps=best.throughput_rps if best else None))
    return tuple(summary)
