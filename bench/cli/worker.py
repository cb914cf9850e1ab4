"""`bench worker --master HOST[:PORT]`: lend this host's CPUs to a `bench run --expect-workers N` elsewhere."""

from __future__ import annotations

import argparse
import os

from bench.cli.options import Commands, log_dir
from bench.errors import BenchError


def add_parser(commands: Commands) -> None:
    worker = commands.add_parser("worker", help="join a running `bench run --expect-workers N` as a load "
                                 "generator (a Locust worker); the plan, rows and samples travel over Locust's "
                                 "messages")
    worker.add_argument("--master", required=True, metavar="HOST[:PORT]",
                        help="the run's --master-bind address (port default 5557)")
    worker.add_argument("--generator-cpus", help="CPUs to pin the generator to (default: all)")
    worker.add_argument("--idle-timeout", type=float, default=300.0, metavar="S",
                        help="stop when no cell has come for S seconds (default 300: a run deploys servers "
                             "between cells)")
    worker.add_argument("--cells", type=int, metavar="N", help="stop after serving N cells")
    worker.set_defaults(handler=cmd_worker)


def master_address(value: str) -> tuple[str, int]:
    from bench.load.remote_protocol import split_master

    try:
        return split_master(value)
    except ValueError:
        raise BenchError(f"--master {value}: not HOST[:PORT]", hint="for example --master 10.0.0.5:5557") from None


def cmd_worker(args: argparse.Namespace) -> int:
    from bench.cli.console import console
    from bench.load.worker import serve
    from bench.targets.launch import parse_cpu_list

    host, port = master_address(args.master)
    if not args.idle_timeout > 0:
        raise BenchError(f"--idle-timeout {args.idle_timeout:g}: a positive number of seconds",
                         hint="for example --idle-timeout 60")
    if args.cells is not None and args.cells < 1:
        raise BenchError(f"--cells {args.cells}: at least 1", hint="or leave it out to serve every cell")
    cpus = parse_cpu_list(args.generator_cpus) if args.generator_cpus else tuple(sorted(os.sched_getaffinity(0)))
    folder = log_dir("worker")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"locust-{os.getpid()}.log"
    console.print(f"worker: joining {host}:{port} (log {log})")
    served = serve(host, port, cpus, args.idle_timeout, args.cells, log, console.print)
    console.print(f"worker: served {served} cell(s)")
    return 0
