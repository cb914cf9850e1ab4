"""`bench worker`: this host as a load generator for a `bench run --expect-workers N` elsewhere.

Every cell of a run has its own Locust master, so the worker starts one Locust worker process per cell
(bench.load.locustfile in remote-worker mode, pinned to the generator CPUs) and starts the next when it
ends, until no master has answered for `idle_s`, the master aborted (its run was interrupted), or
`cells` cells are served. Everything it needs comes over Locust's messages; only a small status file of
its own (what it joined, how it ended) is written locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.load.driver import LOCUSTFILE
from bench.load.remote_protocol import REMOTE_WORKER_ENV, WORKER_STATUS_ENV
from bench.processes import pin_and_tie_to_parent, stop_group

POLL_S = 0.2


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


def run_one(host: str, port: int, cpus: tuple[int, ...], idle_s: float, log_path: Path) -> WorkerEnd:
    """One Locust worker process, for one cell, once the master listens: killed if no plan arrives within
    idle_s."""
    if not master_listens(host, port, time.time() + idle_s):
        return WorkerEnd("idle", {})
    with tempfile.TemporaryDirectory(prefix="servebench-worker-") as scratch:
        status = Path(scratch) / "status.json"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                worker_command(host, port), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, REMOTE_WORKER_ENV: "1", WORKER_STATUS_ENV: str(status), "PYTHONUNBUFFERED": "1"},
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
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def serve(host: str, port: int, cpus: tuple[int, ...], idle_s: float, cells: int | None, log_path: Path,
          say: Callable[[str], None]) -> int:
    """Serve cells until the master goes quiet, aborts, or `cells` are served; the number served. No master
    at all within idle_s is an error (a wrong address, a firewall, a run not started with --expect-workers)."""
    served = 0
    idle_since = time.time()
    while cells is None or served < cells:
        end = run_one(host, port, cpus, max(0.0, idle_since + idle_s - time.time()), log_path)
        facts = end.facts
        if end.state in ("done", "unconfirmed"):
            served += 1
            idle_since = time.time()
            say(f"cell {served}: served as worker {facts.get('index')}"
                + ("" if end.state == "done" else " (the master did not confirm the last samples)"))
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
