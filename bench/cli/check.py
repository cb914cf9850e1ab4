"""`bench check`: does every runtime answer every model's golden inputs like the reference?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli.options import Commands, add_models, add_runtimes, log_dir, models, runtimes, writable


def add_parser(commands: Commands) -> None:
    check = commands.add_parser("check", help="parity of every runtime with every model")
    add_runtimes(check)
    add_models(check)
    check.add_argument("--json", metavar="FILE", help="write the table as a JSON list")
    check.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 1 when any pair disagrees or fails to start (a pair the runtime declares not supported does not)."""
    from bench.cli.console import check_row, check_table, console, out, progress
    from bench.events import Completed, EventHook, Message, completed_to, say_to
    from bench.measure.check import CheckRow, run_check
    from bench.targets.local import LocalTarget
    from bench.targets.orphans import reap_orphan_processes

    specs, model_specs = runtimes(args.runtime), models(args)
    if args.json:
        writable(Path(args.json))
    logs = log_dir("check")
    for removed in reap_orphan_processes():  # what a dead harness left running
        console.print(f"removed {removed}")
    rows = run_check(LocalTarget(), specs, model_specs, logs, completed_to(EventHook[Completed[CheckRow]](check_row)),
                     say_to(EventHook[Message](progress)))
    out.print(check_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([row.as_dict() for row in rows], indent=2) + "\n")
        console.print(f"wrote {args.json}")
    console.print(f"server logs in {logs}")
    return 1 if any(row.counts_against for row in rows) else 0
