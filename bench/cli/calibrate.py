"""`bench calibrate`: how far the load generator itself can be trusted, measured on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.options import Commands, add_cpu_options, cpus, writable


def add_parser(commands: Commands) -> None:
    calibrate = commands.add_parser("calibrate", help="measure the load generator against known servers")
    calibrate.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    calibrate.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    calibrate.add_argument("--keep", metavar="DIR", help="keep raw samples and server records here")
    add_cpu_options(calibrate, server="CPUs for the calibration servers (default: the last one)")
    calibrate.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench.cli.console import calibration_table, console, out, progress
    from bench.events import EventHook, Message
    from bench.measure.calibrate import calibrate

    plan = cpus(args)
    if args.json:
        writable(Path(args.json))  # before minutes of measuring, not after
    console.print(f"calibrating the load generator: server CPUs {list(plan.server)}, generator CPUs "
                  f"{list(plan.generator)}, {args.duration:.0f} s per measurement")
    report = calibrate(plan, args.duration, EventHook[Message](progress), keep=Path(args.keep) if args.keep else None)
    out.print(calibration_table(report))
    if args.json:
        Path(args.json).write_text(report.as_json() + "\n")
        console.print(f"wrote {args.json}")
    return 0
