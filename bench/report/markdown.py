"""summary.md: the verdict and the summary table, sized for a CI job summary or a PR comment.

No figures and no environment dump: those live in report.html. Caveats fold into a <details> block
and are capped, so a run full of failed cells still fits a PR comment.
"""

from __future__ import annotations

from bench.report.capacity import capacity_rows
from bench.report.html import title_of
from bench.report.model import ReportData
from bench.report.ranking import ModelVerdict, run_caveats
from bench.report.rounds import pair_orders, ranking_lines, rounds_of, rounds_rows
from bench.report.summary import summary_rows
from bench.report.templating import environment
from bench.report.tuning import price, ranking_verdict, tuning_rows, tunings

TEMPLATE = "summary.md.j2"
MAX_CAVEATS = 20
BADGES = {"valid": "✅ valid", "invalid": "⚠️ invalid", "failed": "❌ failed"}


def render_markdown(data: ReportData, verdicts: list[ModelVerdict], report_name: str = "report.html") -> str:
    caveats = run_caveats(data) + [caveat for verdict in verdicts for caveat in verdict.caveats]
    return environment(html=False).get_template(TEMPLATE).render(
        title=title_of(data), runs=data.runs, overlay=data.overlay, verdicts=verdicts, caveats=caveats,
        max_caveats=MAX_CAVEATS, summary=summary_rows(data.cells), badges=BADGES, report_name=report_name,
        capacity=capacity_rows(data),
        rounds=rounds_rows(rounds_of(data)), rounds_ranking=ranking_lines(rounds_of(data)),
        pair_orders=pair_orders(rounds_of(data)),
        tuning=tuning_rows(tunings(data), price(data)), tuning_verdict=ranking_verdict(tunings(data), price(data)),
    )
