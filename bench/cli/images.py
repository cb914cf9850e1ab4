"""`bench images build`: one Docker image per runtime, built at once, reused while its inputs are unchanged."""

from __future__ import annotations

import argparse
import time

from bench.cli.options import Commands, add_runtimes, image_command, log_dir, ready_images, runtimes
from bench.errors import BenchError


def add_parser(commands: Commands) -> None:
    build = image_command(commands, ("images", "per-runtime Docker images"), "build",
                          help="build (or reuse) one image per runtime")
    add_runtimes(build)
    build.add_argument("--parallel", type=int, default=2, help="images built at once")
    build.set_defaults(handler=cmd_images_build)


def cmd_images_build(args: argparse.Namespace) -> int:
    from bench.cli.console import elapsed, image_results_table, out, print_image_failures, status
    from bench.events import EventHook, Status
    from bench.provision.images import build_images

    base_image, offline = ready_images(args)
    specs = runtimes(args.runtime)
    logs = log_dir("images")
    started = time.monotonic()
    results = build_images(specs, base_image, offline, logs, EventHook[Status](status), parallel=args.parallel)
    print_image_failures(results)
    out.print(image_results_table(results, base_image, offline))
    out.print(elapsed(started))
    failures = sum(1 for info in results.values() if isinstance(info, BenchError))
    if failures:
        raise BenchError(f"{failures} image(s) failed to build", hint=f"build logs in {logs}")
    return 0
