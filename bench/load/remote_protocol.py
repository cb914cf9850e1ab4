"""What a master of remote workers and its workers say to each other, and what the master tells the harness.

Messages go over Locust's own connection (`runner.send_message` / `register_message`), so a worker on
another host needs nothing but the master's address: no shared disk, no copied files.

    worker -> master  HELLO    {nonce}, once its handlers are registered (a plan sent on Locust's own connect
                               could arrive before they are)
    master -> worker  CHALLENGE {nonce, proof}; worker -> master PROOF {proof}: both hold the run's token
                               (bench.load.worker_auth); a worker that does not is refused (ABORT) and named
    master -> worker  PLAN     the load plan (start unset), the request bodies (a packed bodies file), extra headers
                               (with --share-headers only), the worker's index
    worker -> master  PING     {sent}: a clock exchange (bench.load.clock); master -> worker PONG {sent, master}
    worker -> master  READY    host, address, pid, its clock reading
    master -> worker  START    {start_at}: scheduled time zero, in the master's clock
    worker -> master  SAMPLES  {rows}: sample CSV lines, in the master's clock, twice a second
    worker -> master  DONE     its report (counts, lateness, CPU, the clock measured again); master -> worker
                               DONE_ACK once every sample before it is written
    master -> worker  ABORT    {reason, final}: the master was interrupted (final: stop serving), this cell did
                               not want this worker (it already had its N), the worker was refused (no token),
                               or it sent more samples than its share of the schedule

The master keeps `distributed.json` in the cell's load folder (rewritten on every change, so a killed
master still leaves it): the start time, each worker's report, and the error that stopped the cell.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

HELLO = "servebench_hello"
CHALLENGE = "servebench_challenge"
PROOF = "servebench_proof"
PLAN = "servebench_plan"
PING = "servebench_ping"
PONG = "servebench_pong"
READY = "servebench_ready"
START = "servebench_start"
SAMPLES = "servebench_samples"
DONE = "servebench_done"
DONE_ACK = "servebench_done_ack"
ABORT = "servebench_abort"

STATE_FILE = "distributed.json"
REMOTE_WORKER_ENV = "SERVEBENCH_REMOTE_WORKER"  # set by `bench worker`: this Locust process is a remote worker
WORKER_STATUS_ENV = "SERVEBENCH_WORKER_STATUS"  # a local file where the worker notes what it joined
ABORTED_EXIT = 3  # a worker's Locust process exits with this when the master aborted the cell
MASTER_LOST_EXIT = 4  # ... and with this when the master stopped answering
DEFAULT_MASTER_PORT = 5557  # Locust's own
MAX_ROW_BYTES = 160  # a sample line is about 65 bytes: a worker's samples are capped at its share of rows x this
SHARE_MARGIN = 1.5  # Poisson draws and a closed loop's pace vary: a share this much over the expected, plus
SHARE_SLACK_ROWS = 1000
CLOSED_LOOP_MAX_RPS = 50_000.0  # a closed loop has no schedule: more than this per worker is not a real one


@dataclass(frozen=True)
class WorkerReport:
    """One remote worker in one cell, as the master recorded it."""

    index: int
    host: str  # the worker's host name
    address: str  # the address it reaches the master from
    pid: int
    joined_after_s: float  # after the master started listening
    clock_offset_ms: float  # the master's clock minus the worker's
    clock_rtt_ms: float
    clock_drift_ms: float | None = None
    samples: int = 0  # rows received by the master
    late_mean_ms: float | None = None  # send time minus scheduled time over its sent requests
    late_max_ms: float | None = None
    cpu_percent_max: float | None = None
    cpu_percent_mean: float | None = None
    finished: bool = False  # its report came: every sample it recorded reached the master


@dataclass(frozen=True)
class DistributedState:
    expected: int
    start_at: float | None = None  # the master's clock
    workers: tuple[WorkerReport, ...] = ()
    error: str | None = None
    listening_since: float = 0.0
    master: str = ""  # the address workers were told to join
    refused: tuple[str, ...] = ()  # Locust client ids (host name first) that could not prove the run's token

    def with_worker(self, report: WorkerReport) -> DistributedState:
        others = tuple(worker for worker in self.workers if worker.index != report.index)
        return replace(self, workers=tuple(sorted((*others, report), key=lambda worker: worker.index)))

    def write(self, folder: Path) -> None:
        partial = folder / f".{STATE_FILE}.partial"
        partial.write_text(json.dumps(asdict(self), indent=1))
        os.replace(partial, folder / STATE_FILE)

    @classmethod
    def read(cls, folder: Path) -> DistributedState | None:
        path = folder / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["workers"] = tuple(WorkerReport(**worker) for worker in data["workers"])
        data["refused"] = tuple(data.get("refused", ()))
        return cls(**data)


def split_master(value: str) -> tuple[str, int]:
    """HOST[:PORT] (an IPv6 literal in brackets) as host and port; ValueError when malformed."""
    host, port = value, DEFAULT_MASTER_PORT
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(value)
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = int(text)
    elif ":" in value:
        ipaddress.IPv6Address(value)  # a bare IPv6 address, or a ValueError
    if not host or not 0 < port < 65536:
        raise ValueError(value)
    return host, port


def sample_byte_cap(loop: str, stages: list[tuple[float, float]], total_s: float, workers: int) -> int:
    """The most sample bytes one worker may send in a cell: its share of the schedule's rows (a closed loop's
    at CLOSED_LOOP_MAX_RPS), with a margin, at MAX_ROW_BYTES each. A worker past it is cut off: a rogue or
    broken worker must not grow the master's files without bound."""
    share = sum(duration * rate for duration, rate in stages) / max(1, workers) if loop == "open" \
        else total_s * CLOSED_LOOP_MAX_RPS
    return int((share * SHARE_MARGIN + SHARE_SLACK_ROWS) * MAX_ROW_BYTES)
