"""`bench worker`: this host as a load generator for a `bench run --expect-workers N` elsewhere.

Every cell of a run has its own Locust master, so the worker starts one Locust worker process per cell
(bench.load.locustfile in remote-worker mode, pinned to the generator CPUs) and starts the next when it
ends, until no master has answered for `idle_s`, the master aborted (its run was interrupted), or
`cells` cells are served. Everything it needs comes over Locust's messages; only a small status file of
its own (what it joined, how it ended) is written locally.

Its options and entry point live here, not in bench.cli, so that the load generator's image (the same
`bench worker`, started as `python -m bench.load.worker` in a cluster's pods) needs only Locust, numpy,
psutil and grpc, not the harness's own dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.load.remote_protocol import REMOTE_WORKER_ENV, WORKER_STATUS_ENV, split_master
from bench.load.worker_auth import TOKEN_ENV
from bench.processes import parse_cpu_list, pin_and_tie_to_parent, stop_group

POLL_S = 0.2
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_IDLE_S = 300.0


@dataclass(frozen=True)
class WorkerOptions:
    """`bench worker`'s options, checked."""

    host: str
    port: int
    cpus: tuple[int, ...]
    idle_s: float
    cells: int | None
    token: str = field(default="", repr=False)  # the run's: proves this worker to its master, and the master to it


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", required=True, metavar="HOST[:PORT]",
                        help="the run's --master-bind address (port default 5557)")
    parser.add_argument("--generator-cpus", help="CPUs to pin the generator to (default: all)")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_S, metavar="S",
                        help=f"stop when no cell has come for S seconds (default {DEFAULT_IDLE_S:.0f}: a run deploys "
                             "servers between cells)")
    parser.add_argument("--cells", type=int, metavar="N", help="stop after serving N cells")
    parser.add_argument("--token-file", metavar="FILE", help=f"the run's worker token (default: ${TOKEN_ENV}, "
                        "which `bench run --expect-workers` prints or reads); never on the command line")


def worker_options(args: argparse.Namespace) -> WorkerOptions:
    """The parsed options, checked: a usage error is a BenchError (one line, exit 2)."""
    try:
        host, port = split_master(args.master)
    except ValueError:
        raise BenchError(f"--master {args.master}: not HOST[:PORT]",
                         hint="for example --master 10.0.0.5:5557") from None
    if not args.idle_timeout > 0:
        raise BenchError(f"--idle-timeout {args.idle_timeout:g}: a positive number of seconds",
                         hint="for example --idle-timeout 60")
    if args.cells is not None and args.cells < 1:
        raise BenchError(f"--cells {args.cells}: at least 1", hint="or leave it out to serve every cell")
    try:
        cpus = parse_cpu_list(args.generator_cpus) if args.generator_cpus else tuple(sorted(os.sched_getaffinity(0)))
    except ValueError:
        raise BenchError(f"--generator-cpus {args.generator_cpus}: not a CPU list",
                         hint="use forms like 1 or 0,2 or 2-3") from None
    if not set(cpus) <= os.sched_getaffinity(0):
        raise BenchError(f"--generator-cpus {args.generator_cpus}: not CPUs this process may run on",
                         hint=f"choose among {sorted(os.sched_getaffinity(0))}")
    return WorkerOptions(host, port, cpus, args.idle_timeout, args.cells, _token(args.token_file))


def _token(path: str | None) -> str:
    """The run's token from --token-file or the environment: without one no master would accept this worker."""
    if path is not None:
        try:
            token = Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchError(f"--token-file {path}: cannot be read ({type(exc).__name__})",
                             hint="the file holding the token `bench run --expect-workers` printed") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise BenchError("no worker token: the run's master accepts only workers that hold it",
                         hint=f"export {TOKEN_ENV}=<the token bench run printed>, or --token-file FILE")
    return token


@dataclass(frozen=True)
class WorkerEnd:
    """How one Locust worker process ended: served its share, aborted by the master, or never joined."""

    state: str  # done, unconfirmed, aborted, refused, ended, failed, idle, exited
    facts: dict[str, object]


def worker_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", host,
            "--master-port", str(port), "--loglevel", "WARNING"]


def master_listens(host: str, port: int, until: float) -> bool:
    """Wait for the master's port to accept connections (Locust's own worker retries only every 5 s, and a
    cell waits a bounded time for its workers)."""
    while time.time() < until:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(POLL_S)
    return False


def run_one(host: str, port: int, cpus: tuple[int, ...], idle_s: float, log_path: Path | None,
            token: str) -> WorkerEnd:
    """One Locust worker process, for one cell, once the master listens: killed if no plan arrives within
    idle_s. Its output goes to log_path, or to this process's own (a pod's log) when None."""
    if not master_listens(host, port, time.time() + idle_s):
        return WorkerEnd("idle", {})
    with tempfile.TemporaryDirectory(prefix="servebench-worker-") as scratch:
        status = Path(scratch) / "status.json"
        with (log_path.open("ab") if log_path is not None else contextlib.nullcontext(None)) as log:
            process = subprocess.Popen(
                worker_command(host, port), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, REMOTE_WORKER_ENV: "1", WORKER_STATUS_ENV: str(status), "PYTHONUNBUFFERED": "1",
                     TOKEN_ENV: token},
                start_new_session=True, preexec_fn=lambda: pin_and_tie_to_parent(cpus))
            idle_until = time.time() + idle_s
            try:
                while process.poll() is None:
                    time.sleep(POLL_S)
                    if not status.exists() and time.time() > idle_until:
                        stop_group(process, 5)
                        return WorkerEnd("idle", {})
            finally:
                stop_group(process, 5)
        facts: dict[str, object] = json.loads(status.read_text()) if status.exists() else {}
    return WorkerEnd(str(facts.get("state", "exited")), facts)


def serve(host: str, port: int, cpus: tuple[int, ...], idle_s: float, cells: int | None, log_path: Path | None,
          say: Callable[[str], None], token: str) -> int:
    """Serve cells until the master goes quiet, aborts, or `cells` are served; the number served. No master
    at all within idle_s is an error (a wrong address, a firewall, a run not started with --expect-workers)."""
    served = 0
    idle_since = time.time()
    while cells is None or served < cells:
        end = run_one(host, port, cpus, max(0.0, idle_since + idle_s - time.time()), log_path, token)
        facts = end.facts
        if end.state in ("done", "unconfirmed"):
            served += 1
            idle_since = time.time()
            say(f"cell {served}: served as worker {facts.get('index')}"
                + ("" if end.state == "done" else " (the master did not confirm the last samples)"))
        elif end.state in ("no-token", "untrusted"):
            raise BenchError(str(facts.get("reason")), hint=f"give the token of the run at {host}:{port} ({TOKEN_ENV} "
                             "or --token-file)" if end.state == "no-token" else
                             "check --master: it is not the run whose token this worker holds")
        elif end.state == "aborted":
            say(f"the master stopped this worker: {facts.get('reason')}")
            return served
        elif end.state == "idle" or time.time() > idle_since + idle_s:
            if served:
                say(f"no further cell from {host}:{port} within {idle_s:.0f} s: done")
                return served
            raise BenchError(f"no master answered at {host}:{port} within {idle_s:.0f} s",
                             hint="start `bench run --expect-workers N --master-bind ADDR` first, and check that "
                                  "this host reaches ADDR:PORT")
        elif end.state == "refused":
            say(f"not needed for this cell ({facts.get('reason')}): waiting for the next")
        else:
            say(f"a cell ended without a report ({end.state}: {facts.get('reason', 'see ' + str(log_path))})")
        time.sleep(1.0)  # the cell's master is closing: the next cell's opens the port anew
    return served


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.load.worker --master HOST[:PORT]`: `bench worker` without the harness installed (the load
    generator's image); the Locust worker's output goes to this process's own, for `kubectl logs`."""
    parser = argparse.ArgumentParser(prog="python -m bench.load.worker",
                                     description="join a running `bench run --expect-workers N` as a load generator")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = worker_options(args)
        print(f"worker: joining {options.host}:{options.port}", flush=True)
        served = serve(options.host, options.port, options.cpus, options.idle_s, options.cells, None,
                       lambda line: print(f"worker: {line}", flush=True), options.token)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"worker: served {served} cell(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
