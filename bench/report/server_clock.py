"""The server's own clock beside the client's: per cell whose runtime publishes Prometheus metrics, the
requests it counted in the window and their duration on its clock, against the client's latency of the
same cell. The difference is what the server's timer does not see: the network, the HTTP stack before the
runtime's middleware starts it, queueing in front of the server."""

from __future__ import annotations

from dataclasses import dataclass

from bench.report.format import fmt_ms, fmt_number
from bench.report.model import ReportData, cell_label


@dataclass(frozen=True)
class ServerClockRow:
    run_id: str
    runtime: str
    model: str
    label: str
    series: str
    server_requests: str
    client_requests: str
    server_mean: str
    server_p50: str
    server_p99: str
    client_mean: str
    client_p50: str
    client_p99: str
    outside_mean: str  # client mean minus server mean: what the server's clock does not see
    queue_mean: str  # of the server's mean, the time queued inside it (a runtime that publishes it)
    error: str | None


def server_clock_rows(data: ReportData) -> list[ServerClockRow]:
    rows = []
    for run, cell, metrics in data.cells_with(lambda cell: cell.server_metrics):
        client_mean = cell.latency_ok.mean  # the server counts the requests it answered
        outside = (client_mean - metrics.mean_ms
                   if client_mean is not None and metrics.mean_ms is not None else None)
        rows.append(ServerClockRow(
            run_id=run.run_id, runtime=cell.runtime, model=cell.model,
            label=cell_label(cell), series=metrics.series,
            server_requests=fmt_number(metrics.requests, 0), client_requests=fmt_number(cell.counts.completed, 0),
            server_mean=fmt_ms(metrics.mean_ms), server_p50=fmt_ms(metrics.p50_ms),
            server_p99=fmt_ms(metrics.p99_ms),
            client_mean=fmt_ms(client_mean), client_p50=fmt_ms(cell.latency_ok.p50),
            client_p99=fmt_ms(cell.latency_ok.p99),
            outside_mean=fmt_ms(outside), queue_mean=fmt_ms(metrics.queue_mean_ms), error=metrics.error))
    return sorted(rows, key=lambda row: (row.model, row.label, row.runtime, row.run_id))
