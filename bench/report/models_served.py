"""The models a run served and the pairs it could not: where each model came from (the URI as given, the
version it resolved to, its content hash), what its MLmodel says (flavours, signature, predict function,
requirements) and where the rows came from; then each runtime x model pair left out, and why."""

from __future__ import annotations

from dataclasses import dataclass

from bench.report.format import DASH
from bench.report.model import ReportData


@dataclass(frozen=True)
class ModelRow:
    run_id: str
    model: str
    kind: str  # "reference" or "team"
    facts: list[tuple[str, str]]


@dataclass(frozen=True)
class UnsupportedRow:
    run_id: str
    runtime: str
    model: str
    reason: str


def model_rows(data: ReportData) -> list[ModelRow]:
    rows = []
    for run in data.runs:
        for name, record in run.results.models.items():
            facts = [("source", record.source or "bundled reference model"), ("resolved", record.resolved or DASH),
                     ("version", record.version or DASH), ("framework", record.framework or DASH),
                     ("flavours", ", ".join(record.flavours) or DASH), ("input", record.input_kind or DASH),
                     ("signature inputs", record.inputs or DASH), ("signature outputs", record.outputs or DASH),
                     ("predict function", record.predict_fn or DASH), ("rows from", record.data or DASH),
                     ("content hash", (record.content_hash or record.fingerprint or DASH)[:16]),
                     ("requirements", ", ".join(record.requirements) or DASH)]
            rows.append(ModelRow(run.run_id, name, "reference" if record.source is None else "team",
                                 [(key, value) for key, value in facts if value != DASH or key == "source"]))
    return rows


def unsupported_rows(data: ReportData) -> list[UnsupportedRow]:
    return [UnsupportedRow(run.run_id, pair.runtime, pair.model, pair.reason)
            for run in data.runs for pair in run.results.unsupported]
