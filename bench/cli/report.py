"""`bench report`: (re)render report.html and summary.md from saved run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.options import Commands


def add_parser(commands: Commands) -> None:
    report = commands.add_parser("report", help="(re)render report.html and summary.md from saved runs")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run, or several to overlay")
    report.add_argument("--out", metavar="DIR", help="where to write (default: the (first) run folder)")
    report.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from bench.cli.console import out, report_paths
    from bench.report import render_run_reports

    html, markdown = render_run_reports([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None)
    out.print(report_paths(html, markdown))
    return 0
