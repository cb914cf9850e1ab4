"""bench run's remote load generators (`--expect-workers N`, `--master-bind`, `--worker-wait`), checked before
anything is deployed: the master's port is tried at once, not after the first server started."""

from __future__ import annotations

import argparse
import socket
from typing import TYPE_CHECKING

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.load.plan import RemoteWorkers

MAX_WORKERS = 64


def add_remote_options(run: argparse.ArgumentParser) -> None:
    remote = run.add_argument_group("remote load generators (Locust's distributed mode)")
    remote.add_argument("--expect-workers", type=int, metavar="N", help="generate the load on N `bench worker` "
                        "processes, on this host or others: each cell waits for N to join, hands each its share "
                        "of the schedule and gathers their samples over Locust's messages")
    remote.add_argument("--master-bind", default="127.0.0.1", metavar="ADDR[:PORT]", help="where workers join "
                        "(default 127.0.0.1:5557: this host only; another host's workers need an address they reach)")
    remote.add_argument("--worker-wait", type=float, default=60.0, metavar="S",
                        help="how long each cell waits for its workers before failing (default 60)")


def remote_of(args: argparse.Namespace) -> RemoteWorkers | None:
    """--expect-workers and its address, checked (the port is tried now, not after the first deploy)."""
    from bench.load.plan import RemoteWorkers
    from bench.load.remote_protocol import split_master

    count: int | None = getattr(args, "expect_workers", None)
    if count is None:
        return None
    if not 1 <= count <= MAX_WORKERS:
        raise BenchError(f"--expect-workers {count}: between 1 and {MAX_WORKERS}",
                         hint="for example --expect-workers 2")
    if args.generator_processes is not None:
        raise BenchError("--generator-processes and --expect-workers both say how many generators",
                         hint="drop --generator-processes: each worker is one generator process")
    if not args.worker_wait > 0:
        raise BenchError(f"--worker-wait {args.worker_wait:g}: a positive number of seconds",
                         hint="for example --worker-wait 60")
    try:
        bind, port = split_master(args.master_bind)
    except ValueError:
        raise BenchError(f"--master-bind {args.master_bind}: not ADDR[:PORT]",
                         hint="for example --master-bind 10.0.0.5:5557") from None
    _can_bind(bind, port)
    return RemoteWorkers(count=count, bind=bind, port=port, wait_s=args.worker_wait)


def _can_bind(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise BenchError(f"--master-bind {host}:{port}: cannot listen there ({exc.strerror})",
                         hint="an address of this host and a free port, e.g. --master-bind 0.0.0.0:5558") from None


