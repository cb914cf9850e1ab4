"""`bench worker --master HOST[:PORT]`: lend this host's CPUs to a `bench run --expect-workers N` elsewhere.

The options and the loop are bench.load.worker's, which the load generator's image runs as
`python -m bench.load.worker` without the harness installed."""

from __future__ import annotations

import argparse
import os

from bench.cli.options import Commands, log_dir


def add_parser(commands: Commands) -> None:
    from bench.load.worker import add_worker_arguments

    worker = commands.add_parser("worker", help="join a running `bench run --expect-workers N` as a load "
                                 "generator (a Locust worker); the plan, rows and samples travel over Locust's "
                                 "messages")
    add_worker_arguments(worker)
    worker.set_defaults(handler=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from bench.cli.console import console
    from bench.load.worker import serve, worker_options

    options = worker_options(args)
    folder = log_dir("worker")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"locust-{os.getpid()}.log"
    console.print(f"worker: joining {options.host}:{options.port} (log {log})")
    served = serve(options.host, options.port, options.cpus, options.idle_s, options.cells, log, console.print,
                   options.token)
    console.print(f"worker: served {served} cell(s)")
    return 0
