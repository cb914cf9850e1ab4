"""What a cell records about remote load generators (bench run --expect-workers): each worker as its master
reported it, and the reasons a worker makes the cell untrustworthy."""

from __future__ import annotations

from bench.load.clock import ClockReading, clock_reasons
from bench.load.remote_protocol import WorkerReport
from bench.results.schema import GeneratorWorker


def generator_workers(reports: tuple[WorkerReport, ...]) -> tuple[GeneratorWorker, ...]:
    return tuple(GeneratorWorker(index=report.index, host=report.host, address=report.address,
                                 joined_after_s=report.joined_after_s, clock_offset_ms=report.clock_offset_ms,
                                 clock_rtt_ms=report.clock_rtt_ms, clock_drift_ms=report.clock_drift_ms,
                                 samples=report.samples, late_mean_ms=report.late_mean_ms,
                                 late_max_ms=report.late_max_ms, cpu_percent_max=report.cpu_percent_max,
                                 cpu_percent_mean=report.cpu_percent_mean, finished=report.finished)
                 for report in reports)


def worker_reasons(reports: tuple[WorkerReport, ...], expected: int) -> list[str]:
    """Missing workers, workers gone before their report (samples may be missing), clocks known too loosely."""
    if not reports:
        return []
    reasons = []
    if len(reports) < expected:
        reasons.append(f"only {len(reports)} of {expected} remote workers took part: part of the schedule was "
                       "never sent")
    for report in reports:
        name = f"{report.host} ({report.address})" if report.address else report.host
        if not report.finished:
            reasons.append(f"worker {name} left before it reported: some of its samples may be missing")
        reasons += clock_reasons(name, ClockReading(report.clock_offset_ms, report.clock_rtt_ms,
                                                    report.clock_drift_ms))
    return reasons
