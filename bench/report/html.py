"""report.html: one self-contained page (inline CSS, figures as data URIs, no scripts) from saved runs.

The page orders its sections as a reader decides: the verdict first, then the numbers behind it, the
figures, the measured runtime comparison, and the environment needed to trust or challenge it all.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bench import __version__
from bench.report.capacity import capacity_rows
from bench.report.environment import run_environments
from bench.report.figures import model_charts
from bench.report.load_generators import generator_rows
from bench.report.model import ReportData
from bench.report.models_served import model_rows, unsupported_rows
from bench.report.ranking import ModelVerdict, run_caveats
from bench.report.rounds import pair_orders, ranking_lines, rounds_of, rounds_rows
from bench.report.runtime_table import runtime_facts
from bench.report.server_clock import server_clock_rows
from bench.report.summary import summary_rows
from bench.report.templating import environment
from bench.report.time_spent import time_spent_rows
from bench.report.tuning import frontier_chart, price, ranking_verdict, tuning_rows, tunings

TEMPLATE = "report.html.j2"


def title_of(data: ReportData) -> str:
    if data.overlay:
        return f"servebench: {len(data.runs)} runs overlaid"
    return f"servebench run {data.runs[0].run_id}"


def render_html(data: ReportData, verdicts: list[ModelVerdict]) -> str:
    """The whole report as one HTML string."""
    return environment(html=True).get_template(TEMPLATE).render(
        title=title_of(data), overlay=data.overlay, runs=data.runs, verdicts=verdicts,
        run_caveats=run_caveats(data), summary=summary_rows(data.cells), charts=model_charts(data),
        capacity=capacity_rows(data),
        rounds=rounds_rows(rounds_of(data)), rounds_ranking=ranking_lines(rounds_of(data)),
        pair_orders=pair_orders(rounds_of(data)),
        tuning=tuning_rows(tunings(data), price(data)), tuning_verdict=ranking_verdict(tunings(data), price(data)),
        frontier=frontier_chart(data), time_spent=time_spent_rows(data), server_clock=server_clock_rows(data),
        generators=generator_rows(data), models_served=model_rows(data), unsupported=unsupported_rows(data),
        facts=runtime_facts(data), environments=run_environments(data), version=__version__,
        rendered=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        sources=[run.folder.name for run in data.runs],
    )
