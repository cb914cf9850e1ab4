"""`bench envs build`: one virtualenv per runtime, built at once, cached by requirements hash."""

from __future__ import annotations

import argparse
import time

from bench.cli.options import Commands, add_runtimes, command_group, runtimes
from bench.errors import BenchError


def add_parser(commands: Commands) -> None:
    group = command_group(commands, "envs", "per-runtime environments")
    build = group.add_parser("build", help="build environments (cached by requirements hash)")
    add_runtimes(build)
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.add_argument("--parallel", type=int, default=4, help="environments built at once")
    build.set_defaults(handler=cmd_envs_build)


def cmd_envs_build(args: argparse.Namespace) -> int:
    from bench.cli.console import StatusBoard, elapsed, envs_table, out
    from bench.events import EventHook, Status
    from bench.provision.envs import build_envs

    specs = runtimes(args.runtime)
    names = [spec.name for spec in specs]
    started = time.monotonic()
    with StatusBoard(names, "building environments") as board:
        results = build_envs(specs, EventHook[Status](board), force=args.force, parallel=args.parallel)
    out.print(envs_table(names, results))
    out.print(elapsed(started))
    failures = sum(1 for env, _built, _error in results.values() if env is None)
    if failures:
        raise BenchError(f"{failures} environment(s) failed to build", hint="see the build log named above")
    return 0
