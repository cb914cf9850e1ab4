"""The Jinja2 environment shared by the HTML report and the Markdown summary: templates and filters.

Templates ship as package data (bench/report/templates), so an installed servebench renders reports
without a checkout. HTML autoescapes every value (reasons and errors are free text from servers).
"""

from __future__ import annotations

from functools import cache

import jinja2

from bench.report.format import fmt_ci, fmt_ms, fmt_rate
from bench.report.runtime_table import size_text


def _markdown_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: no pipes or line breaks to split the row."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@cache
def environment(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update({"ms": fmt_ms, "ci": fmt_ci, "rate": fmt_rate, "size": size_text, "md": _markdown_cell})
    return env
