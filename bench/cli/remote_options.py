"""bench run's remote load generators (`--expect-workers N`, `--master-bind`, `--worker-wait`), checked before
anything is deployed: the master's port is tried at once, not after the first server started."""

from __future__ import annotations

import argparse
import functools
import os
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
    remote.add_argument("--cluster-workers", type=int, metavar="N", help="--target kserve: generate the load on N "
                        "`bench worker` pods in the cluster (the load generator's image), which send to each "
                        "predictor's in-cluster Service; their samples come back as with --expect-workers")
    remote.add_argument("--master-bind", metavar="ADDR[:PORT]", help="where workers join (default 127.0.0.1:5557: "
                        "this host only; another host's workers need an address they reach; with --cluster-workers "
                        "the gateway of kind's Docker network)")
    remote.add_argument("--worker-wait", type=float, default=60.0, metavar="S",
                        help="how long each cell waits for its workers before failing (default 60)")
    remote.add_argument("--share-headers", action="store_true", help="send --header values (an API key) to the "
                        "workers, which need them to reach the endpoint; they cross the network in the clear")


def remote_of(args: argparse.Namespace) -> RemoteWorkers | None:
    """--expect-workers or --cluster-workers and the master's address, checked (the port is tried now, not after
    the first deploy)."""
    from bench.load.plan import RemoteWorkers
    from bench.load.remote_protocol import split_master

    count: int | None = getattr(args, "expect_workers", None)
    in_cluster: int | None = getattr(args, "cluster_workers", None)
    if count is not None and in_cluster is not None:
        raise BenchError("--expect-workers and --cluster-workers both say how many workers",
                         hint="--cluster-workers N starts N worker pods itself; drop --expect-workers")
    if in_cluster is not None:
        from bench.targets.factory import CLUSTER_WORKER_TARGETS

        if args.target not in CLUSTER_WORKER_TARGETS:
            raise BenchError(f"--cluster-workers starts worker pods in a cluster target's cluster "
                             f"({', '.join(CLUSTER_WORKER_TARGETS)}), not with --target {args.target}",
                             hint="use --expect-workers N and start `bench worker` on each host")
        count = in_cluster
    if count is None:
        if getattr(args, "share_headers", False):
            raise BenchError("--share-headers sends the request headers to remote workers: it needs --expect-workers N",
                             hint="add --expect-workers N, or drop --share-headers")
        if getattr(args, "master_bind", None) is not None:
            raise BenchError("--master-bind is where remote workers join: it needs --expect-workers N",
                             hint="add --expect-workers N, or drop --master-bind")
        return None
    flag = "--cluster-workers" if in_cluster is not None else "--expect-workers"
    if not 1 <= count <= MAX_WORKERS:
        raise BenchError(f"{flag} {count}: between 1 and {MAX_WORKERS}", hint=f"for example {flag} 2")
    if args.generator_processes is not None:
        raise BenchError(f"--generator-processes and {flag} both say how many generators",
                         hint="drop --generator-processes: each worker is one generator process")
    if not args.worker_wait > 0:
        raise BenchError(f"--worker-wait {args.worker_wait:g}: a positive number of seconds",
                         hint="for example --worker-wait 60")
    address = args.master_bind or (_kind_gateway(args) if in_cluster is not None else "127.0.0.1")
    try:
        bind, port = split_master(address)
    except ValueError:
        raise BenchError(f"--master-bind {address}: not ADDR[:PORT]",
                         hint="for example --master-bind 10.0.0.5:5557") from None
    if in_cluster is not None and bind in ("0.0.0.0", "::"):
        raise BenchError(f"--master-bind {address}: the worker pods are told this address, so it must be one they "
                         "reach", hint="give this host's address on kind's Docker network")
    if not getattr(args, "dry_run", False):
        _can_bind(bind, port)
    return RemoteWorkers(count=count, bind=bind, port=port, wait_s=args.worker_wait, in_cluster=in_cluster is not None,
                         token=run_token()[0],
                         share_headers=bool(getattr(args, "share_headers", False)))


@functools.cache
def run_token() -> tuple[str, bool]:
    """The run's worker token, one per harness process, and whether it was made here (then `bench run` prints it
    for the `bench worker` commands): $SERVEBENCH_WORKER_TOKEN when set, else a new one."""
    from bench.load.worker_auth import TOKEN_ENV, new_token

    given = os.environ.get(TOKEN_ENV, "").strip()
    return (given, False) if given else (new_token(), True)


def _kind_gateway(args: argparse.Namespace) -> str:
    from bench.targets.kserve.cluster import kind_gateway
    from bench.targets.kserve.runner import Runner

    return kind_gateway(Runner(dry_run=bool(getattr(args, "dry_run", False)), echo=lambda _line: None))


def _can_bind(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise BenchError(f"--master-bind {host}:{port}: cannot listen there ({exc.strerror})",
                         hint="an address of this host and a free port, e.g. --master-bind 10.0.0.5:5558 on a "
                              "private network (or an SSH tunnel to 127.0.0.1:5558)") from None


