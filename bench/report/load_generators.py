"""The remote load generators of each cell (bench run --expect-workers / --cluster-workers): who sent the
load, how well their clocks were known, how late they sent and how busy they were, so a reader can see that a
cell's figures did not come from a generator the report would otherwise hide."""

from __future__ import annotations

from dataclasses import dataclass

from bench.report.format import fmt_ms, fmt_number, fmt_percent
from bench.report.model import ReportData, cell_label


@dataclass(frozen=True)
class GeneratorRow:
    run_id: str
    runtime: str
    model: str
    label: str
    worker: int
    host: str
    address: str
    samples: str
    clock: str  # the offset, known within half the exchange's round trip
    drift: str
    late: str  # mean / max
    cpu: str  # max of its own samples
    finished: bool


def generator_rows(data: ReportData) -> list[GeneratorRow]:
    rows = []
    for run, cell, generator in data.cells_with(lambda cell: cell.generator):
        for worker in generator.workers:
            within = fmt_ms(worker.clock_rtt_ms / 2 if worker.clock_rtt_ms is not None else None)
            rows.append(GeneratorRow(
                run_id=run.run_id, runtime=cell.runtime, model=cell.model,
                label=cell_label(cell), worker=worker.index,
                host=worker.host, address=worker.address, samples=fmt_number(worker.samples, 0),
                clock=f"{fmt_ms(worker.clock_offset_ms)} ± {within}", drift=fmt_ms(worker.clock_drift_ms),
                late=f"{fmt_ms(worker.late_mean_ms, unit=False)} / {fmt_ms(worker.late_max_ms)}",
                cpu=fmt_percent(worker.cpu_percent_max, 0), finished=worker.finished))
    return sorted(rows, key=lambda row: (row.model, row.label, row.runtime, row.run_id, row.worker))
