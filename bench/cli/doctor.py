"""`bench doctor`: what the harness needs, whether it is here, and how to get it."""

from __future__ import annotations

import argparse

from bench.cli.options import Commands
from bench.errors import BenchError


def add_parser(commands: Commands) -> None:
    commands.add_parser("doctor", help="what is installed and reachable, with fixes").set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """A missing required check is an environment error (exit 2) whose hint is the first fix."""
    from bench.cli.console import doctor_table, out
    from bench.provision.doctor import run_checks

    checks = run_checks()
    out.print(doctor_table(checks))
    missing = [check for check in checks if not check.ok and check.required]
    if missing:
        raise BenchError(f"{len(missing)} required check(s) failed: {', '.join(c.name for c in missing)}",
                         hint=missing[0].fix)
    return 0
