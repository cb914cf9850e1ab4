"""`bench compare` output: a text table for the terminal, Markdown for a CI job summary, JSON for tools."""

from __future__ import annotations

import json

from bench.compare.bootstrap import (
    CONFIDENCE,
    INVALID,
    METHOD,
    NOT_COMPARABLE,
    PASS,
    REGRESSION,
    RESAMPLES,
    UNDECIDED,
    WORSE,
)
from bench.compare.gate import Comparison, load_title, pct
from bench.compare.side import Side


def _figure(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "throughput":
        return f"{value:.1f}/s"
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def threshold_text(metric: str, threshold: float) -> str:
    return f"{metric} {threshold * 100:+g}%"


HEADER = ("runtime", "model", "load", "metric", "baseline", "current", "change", "95% CI", "threshold", "verdict",
          "test / note")


def table_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for cell in comparison.cells:
        lead = [cell.key[0], cell.key[1], load_title(cell.key)]
        for metric in cell.metrics:
            ci = "-" if metric.ci is None else f"[{pct(metric.ci[0])}, {pct(metric.ci[1])}]"
            rows.append([*lead, metric.metric, _figure(metric.metric, metric.baseline),
                         _figure(metric.metric, metric.current), pct(metric.change), ci,
                         f"{metric.threshold * 100:+g}%", metric.verdict,
                         "; ".join(t for t in (metric.test, metric.note) if t and t != "-")])
        if not cell.metrics or cell.notes:
            verdict = "(note)" if cell.metrics else cell.verdict
            rows.append([*lead, "-", "-", "-", "-", "-", "-", verdict, "; ".join(cell.notes)])
    return rows


def _sides(comparison: Comparison) -> list[str]:
    return [f"baseline: {comparison.baseline.describe()}", f"current:  {comparison.current.describe()}"]


def _footer(comparison: Comparison) -> list[str]:
    gates = ", ".join(threshold_text(m, t) for m, t in comparison.thresholds.items())
    return [f"thresholds: {gates}", f"test: {METHOD}"]


def render_text(comparison: Comparison) -> str:
    rows = [list(HEADER), *table_rows(comparison)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = [f"bench compare: {comparison.headline()}", *_sides(comparison), ""]
    lines += ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
              for row in rows]
    return "\n".join([*lines, "", *_footer(comparison)]) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(comparison: Comparison) -> str:
    icon = {PASS: "✅", REGRESSION: "❌", UNDECIDED: "⚠️"}[comparison.status]
    lines = [f"### {icon} Serving latency gate: {_md(comparison.headline())}", ""]
    lines += [f"- {_md(line)}" for line in _sides(comparison)] + [""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(comparison):
        row[9] = f"**{row[9]}**" if row[9] in (WORSE, NOT_COMPARABLE, INVALID) else row[9]
        lines.append("| " + " | ".join(_md(cell) for cell in row) + " |")
    return "\n".join([*lines, "", *(f"{_md(line)}  " for line in _footer(comparison))]) + "\n"


def as_json(comparison: Comparison) -> dict[str, object]:
    def side(each: Side) -> dict[str, object]:
        return {"path": str(each.path), "kind": each.kind, "run_id": each.run_id, "git_sha": each.git_sha,
                "status": each.status}

    cells = []
    for cell in comparison.cells:
        runtime, model, scenario, target, batch_size, label = cell.key
        cells.append({"runtime": runtime, "model": model, "scenario": scenario, "target": target,
                      "batch_size": batch_size, "label": label, "verdict": cell.verdict, "notes": cell.notes,
                      "metrics": [{"metric": m.metric, "verdict": m.verdict, "baseline": m.baseline,
                                   "current": m.current, "change": m.change,
                                   "ci": None if m.ci is None else list(m.ci), "threshold": m.threshold,
                                   "test": m.test, "note": m.note} for m in cell.metrics]})
    return {"status": comparison.status, "exit_code": comparison.exit_code, "headline": comparison.headline(),
            "baseline": side(comparison.baseline), "current": side(comparison.current),
            "thresholds": comparison.thresholds, "allow_env_change": comparison.allow_env_change,
            "confidence": CONFIDENCE, "resamples": RESAMPLES, "method": METHOD, "cells": cells}


FORMATS = ("text", "md", "json")


def render(comparison: Comparison, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(comparison)
    if fmt == "json":
        return json.dumps(as_json(comparison), indent=1) + "\n"
    return render_text(comparison)
