"""The summary table: one formatted row per cell, in the same order for the HTML report and summary.md.

Rows are sorted by model, scenario, load point and runtime (then run, in an overlay), so the runtimes
measured at the same load sit next to each other; invalid and failed cells stay in the table with
their reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.report.format import fmt_ci, fmt_ms, fmt_number, fmt_percent, fmt_rate, fmt_ratio
from bench.report.model import as_float, as_int, records


@dataclass(frozen=True)
class SummaryRow:
    run_id: str
    runtime: str
    model: str
    scenario: str
    label: str
    batch_size: int
    p50: str
    p50_ci: str
    p95: str
    p99: str
    p99_ci: str
    p999: str
    p99_ok: str  # successful requests only; shown when it differs from p99
    late: str  # the generator's lateness p50 / p99 (send time after the scheduled time), included in the latency
    requests: str  # scheduled in the window, with how many never went out
    successful_only: bool  # a cell from before schema 5: its percentiles are over successful requests only
    throughput: str
    error_rate: str
    goodput: str
    cpu: str
    cpu_s_per_1000: str  # server CPU-seconds per 1,000 predictions
    serving_cpu_ms: str  # of which outside the model, per prediction in ms (profiled cells: the framework's overhead)
    rss: str
    startup: str
    status: str  # valid, invalid, failed
    reasons: list[str]
    slo_met: bool | None


def _lateness(p50: float | None, p99: float | None) -> str:
    """The generator's lateness as 'p50 / p99' in ms, to a microsecond: an older file without it shows nothing."""
    return "" if p50 is None or p99 is None else f"{p50:.3f} / {p99:.3f}"


def _optional_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def summary_rows(cells: pd.DataFrame) -> list[SummaryRow]:
    ordered = cells.sort_values(["model", "scenario", "batch_size", "offered_rps", "users", "label", "runtime",
                                 "run_index"], na_position="first", kind="stable")
    rows = []
    for cell in records(ordered):
        number = {key: as_float(value) for key, value in cell.items()}
        rows.append(SummaryRow(
            run_id=str(cell["run_id"]), runtime=str(cell["runtime"]), model=str(cell["model"]),
            scenario=str(cell["scenario"]), label=str(cell["label"]), batch_size=as_int(cell["batch_size"], 1),
            p50=fmt_ms(number["p50_ms"], unit=False), p50_ci=fmt_ci(number["p50_ci_low"], number["p50_ci_high"]),
            p95=fmt_ms(number["p95_ms"], unit=False), p99=fmt_ms(number["p99_ms"], unit=False),
            p99_ci=fmt_ci(number["p99_ci_low"], number["p99_ci_high"]), p999=fmt_ms(number["p999_ms"], unit=False),
            p99_ok="" if number["p99_ok_ms"] == number["p99_ms"] else fmt_ms(number["p99_ok_ms"], unit=False),
            late=_lateness(number["late_p50_ms"], number["late_p99_ms"]),
            requests=_requests(as_int(cell["requests"]), as_float(cell["dropped"])),
            successful_only=cell["latency_includes"] == "successful",
            throughput=fmt_rate(number["throughput_rps"], unit=""),
            error_rate=fmt_ratio(number["error_rate"] if cell["requests"] else None),
            goodput=fmt_rate(number["goodput_rps"], unit=""), cpu=fmt_percent(number["server_cpu_percent_mean"], 0),
            cpu_s_per_1000=fmt_number(number["server_cpu_s_per_1000"], 3),
            serving_cpu_ms=fmt_number(
                serving_cpu_ms(number["server_cpu_s_per_1000"], number["profile_model_share"]), 3),
            rss=fmt_number(number["server_rss_mb_max"], 0), startup=fmt_number(number["server_startup_s"], 2),
            status=str(cell["status"]), reasons=[str(r) for r in cell["invalid_reasons"]],
            slo_met=_optional_bool(cell["slo_met"]),
        ))
    return rows


def serving_cpu_ms(cpu_s_per_1000: float | None, model_share: float | None) -> float | None:
    """Server CPU-ms per prediction outside the model (CPU-s per 1,000 is CPU-ms per one)."""
    return None if cpu_s_per_1000 is None or model_share is None else cpu_s_per_1000 * (1.0 - model_share)


def _requests(scheduled: int, dropped: float | None) -> str:
    return f"{scheduled:,}" + (f" ({int(dropped):,} never sent)" if dropped else "")
