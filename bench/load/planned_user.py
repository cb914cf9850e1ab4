"""The locustfile's plan-driven mode, which `bench run` uses (imported only inside a Locust process: Locust
monkey-patches the interpreter on import).

It reads a load plan (JSON, path in SERVEBENCH_LOAD_PLAN) written by bench.load.driver, encodes real
dataset rows with the runtime's wire-protocol codec into ready-made requests (bench.load.connection: one
keep-alive connection per user, Locust's HTTP session bypassed for its cost), and records every request
raw to its own CSV file:
scheduled time, send time, latency from the scheduled time, service time from the send time, status,
response bytes, generator process, whether it waited for a free connection. Locust's own statistics are
never used. When the run ends, every slot that came due but was never sent is recorded as dropped, and
every request still in flight as failed (status 0), each at the time from its schedule to the end: no
scheduled request goes unrecorded.

Open loop: each process computes the same seeded schedule and takes every P-th slot. One dispatcher
sleeps until each slot's time and hands the slot to an idle user, the most recently idle first, so a
slow server cannot delay later sends except by exhausting the user pool (then the slot waits for the
next user to come back, and the lateness is recorded). Most-recently-idle first keeps a few connections
busy at modest rates: when every user claimed a slot in advance, each of the 256 connections sat idle
for 256 slots (5 s at 50 req/s), just past uvicorn's 5-second keep-alive, and a request now and then
met a connection the server was closing (status 0). Closed loop: each user sends the next request as
soon as the previous one returns.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from gevent.event import AsyncResult
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner

from bench.load.bodies import request_bodies
from bench.load.connection import Endpoint, KeepAliveConnection, prebuilt_posts
from bench.load.grpc_connection import GrpcConnection, use_gevent
from bench.load.plan import HEADERS_ENV, LoadPlan
from bench.load.schedule import worker_slots
from bench.protocols import codec_for
from bench.results.samples import DROPPED

PLAN = LoadPlan.from_json(Path(os.environ["SERVEBENCH_LOAD_PLAN"]).read_text())
FLUSH_INTERVAL_S = 0.5
# gevent's loop blocks in epoll_wait, whose timeout is whole milliseconds, so a sleeping user wakes up to
# 1 ms late. At modest per-process rates users wake 1 ms early and yield until their exact time; the
# spin costs about rate x 1 ms of CPU, so above PRECISE_WAKE_MAX_RATE it is off and lateness is reported.
PRECISE_WAKE_MAX_RATE = 400.0
SPIN_WINDOW_S = 0.0012
# The dispatcher hands a slot over this long before its time (a sleep may wake 1 ms late); the user
# then waits for the exact time itself, so the handover adds nothing to the measured latency.
HANDOFF_LEAD_S = 0.003
PRECISE_WAKE = PLAN.loop == "open" and max(rate for _, rate in PLAN.stages) / PLAN.processes <= PRECISE_WAKE_MAX_RATE


class Recorder:
    """Buffers samples in memory and appends them to this process's CSV file twice a second. Once closed
    (the run's end) it records nothing more: what was unfinished then has been recorded as such."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.path: Path | None = None
        self.worker = 0
        self.closed = False

    def open(self, worker: int) -> None:
        self.worker = worker
        self.path = Path(PLAN.samples_dir) / f"samples-{worker}-{os.getpid()}.csv"
        gevent.spawn(self._flush_forever)

    def add(self, scheduled: float, sent: float, service_s: float, status: int, size: int, queued: bool) -> None:
        if self.closed:
            return
        latency_ms = (sent - scheduled + service_s) * 1000.0
        self.rows.append(f"{scheduled:.6f},{sent:.6f},{latency_ms:.4f},{service_s * 1000.0:.4f},"
                         f"{status},{size},{self.worker},{int(queued)}\n")

    def unfinished(self, scheduled: float, sent: float | None, end: float) -> None:
        """A request the run ended on: still in flight (failed, status 0) or never sent (dropped)."""
        latency_ms = (end - scheduled) * 1000.0
        if sent is None:
            self.rows.append(f"{scheduled:.6f},,{latency_ms:.4f},,{DROPPED},0,{self.worker},1\n")
        else:
            self.rows.append(f"{scheduled:.6f},{sent:.6f},{latency_ms:.4f},{(end - sent) * 1000.0:.4f},"
                             f"0,0,{self.worker},0\n")

    def flush(self) -> None:
        if self.rows and self.path is not None:
            rows, self.rows = self.rows, []
            with self.path.open("a") as sink:
                sink.writelines(rows)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


class SlotDispatcher:
    """Hands each scheduled send time to an idle user at that time, most recently idle user first."""

    def __init__(self) -> None:
        self.idle: list[AsyncResult] = []  # a stack: the last user to come back gets the next slot
        self.pending: deque[float] = deque()  # slots that came due while every user was busy
        self.done = False

    def run(self, slots: Iterable[float]) -> None:
        for offset in slots:
            scheduled = PLAN.start_at + offset
            delay = scheduled - HANDOFF_LEAD_S - time.time()  # the user itself waits out the rest, precisely
            if delay > 0:
                gevent.sleep(delay)
            if self.done:  # closed: the run ended before the schedule did
                return
            if self.idle:
                self.idle.pop().set(scheduled)
            else:
                self.pending.append(scheduled)
        self.done = True
        while self.idle:
            self.idle.pop().set(None)

    def next_slot(self) -> tuple[float, bool] | None:
        """The next send time for this user (waiting for it) and whether it had waited for a free user,
        or None when the schedule is served."""
        if self.pending:
            return self.pending.popleft(), True
        if self.done:
            return None
        waiter = AsyncResult()
        self.idle.append(waiter)
        slot: float | None = waiter.get()
        return None if slot is None else (slot, False)

    def close(self) -> list[float]:
        """End the schedule now: the slots that came due and were never sent (no user will take them)."""
        self.done = True
        dropped, self.pending = list(self.pending), deque()
        while self.idle:
            self.idle.pop().set(None)
        return dropped


def finish(end: float) -> None:
    """The run's end: record every due slot never sent as dropped and every request in flight as failed,
    then stop recording, so nothing that came due is missing and nothing is counted twice."""
    if RECORDER.closed:
        return
    for scheduled in DISPATCHER.close():
        RECORDER.unfinished(scheduled, None, end)
    for scheduled, sent in IN_FLIGHT.values():
        RECORDER.unfinished(scheduled, sent, end)
    RECORDER.closed = True
    RECORDER.flush()


RECORDER = Recorder()
DISPATCHER = SlotDispatcher()
STATE: dict[str, int] = {"active": 0}
IN_FLIGHT: dict[int, tuple[float, float]] = {}  # per user: the scheduled and send time of its open request


CODEC = codec_for(PLAN.protocol)
HEADERS = [(str(name), str(value)) for name, value in json.loads(os.environ.get(HEADERS_ENV, "[]"))]
BODIES = request_bodies(np.load(PLAN.rows_file), PLAN.protocol, PLAN.model_name, PLAN.batch_size,
                        PLAN.distinct_bodies, PLAN.seed)
if CODEC.transport == "grpc":
    use_gevent()
    REQUESTS = BODIES  # sent as they are: the channel frames them
else:
    ENDPOINT = Endpoint.from_url(PLAN.base_url, PLAN.verify_tls, PLAN.ca_cert)
    REQUESTS = prebuilt_posts(ENDPOINT, PLAN.predict_path, CODEC.content_type, BODIES, HEADERS)


def _connection() -> KeepAliveConnection | GrpcConnection:
    if CODEC.transport == "grpc":
        return GrpcConnection(PLAN.base_url, PLAN.predict_path, PLAN.request_timeout_s, HEADERS)
    return KeepAliveConnection(ENDPOINT, PLAN.request_timeout_s)


def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    """On every process that runs users (not a --processes master, which runs none: its slots would all be
    recorded as dropped): open the recorder, dispatch this process's share of the schedule."""
    if isinstance(environment.runner, MasterRunner):
        # it holds no samples; Locust's own SIGTERM handling would wait about a second for its workers,
        # which receive the same signal from the harness (it signals the whole process group)
        gevent.signal_handler(signal.SIGTERM, lambda: os._exit(0))
        return
    worker = int(getattr(environment.runner, "worker_index", 0) or 0)
    RECORDER.open(worker)
    if PLAN.loop == "open":
        slots = worker_slots(PLAN.rate_stages(), PLAN.arrival, PLAN.seed, worker, PLAN.processes)  # lazily
        gevent.spawn(DISPATCHER.run, slots)
    gevent.spawn(_quit_when_done, environment)
    gevent.signal_handler(signal.SIGTERM, _terminated)  # after Locust's own, which waits for every user


def _terminated() -> None:
    """SIGTERM (the harness interrupted or stopped the load): record what is unfinished and exit at once;
    Locust's own shutdown would first wait up to --stop-timeout for users that never finish a task."""
    finish(time.time())
    os._exit(0)


def _on_quitting(**_kwargs: Any) -> None:
    finish(time.time())  # Locust's own end (its run-time limit)


events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]


def _quit_when_done(environment: Any) -> None:
    """End the test as soon as the schedule is served and in-flight requests are back (or timed out)."""
    deadline = PLAN.start_at + PLAN.total_s + PLAN.request_timeout_s + 1
    gevent.sleep(max(0.0, PLAN.start_at + 1 - time.time()))
    while time.time() < deadline:
        if time.time() > PLAN.start_at + 1 and STATE["active"] == 0 and environment.runner.user_count == 0:
            break
        gevent.sleep(0.1)
    finish(time.time())
    environment.runner.quit()


def _wait_until(moment: float) -> None:
    delay = moment - time.time()
    if not PRECISE_WAKE:
        if delay > 0:
            gevent.sleep(delay)
        return
    if delay > SPIN_WINDOW_S:
        gevent.sleep(delay - SPIN_WINDOW_S)
    while time.time() < moment:
        gevent.sleep(0)


class ServebenchUser(User):
    host = PLAN.base_url

    def on_start(self) -> None:
        self.body_index = 0
        self.connection = _connection()
        STATE["active"] += 1

    def on_stop(self) -> None:
        self.connection.close()
        STATE["active"] -= 1

    def _send(self, scheduled: float, queued: bool = False) -> None:
        request = REQUESTS[self.body_index % len(REQUESTS)]
        self.body_index += 1
        sent = time.time()
        IN_FLIGHT[id(self)] = (scheduled, sent)
        started = time.perf_counter()
        try:
            status, size = self.connection.send(request)
        except Exception:  # a connection reset, refusal or timeout is a sample with status 0, never a crash
            status, size = 0, 0
        IN_FLIGHT.pop(id(self), None)
        RECORDER.add(scheduled, sent, time.perf_counter() - started, status, size, queued)

    @task
    def send_requests(self) -> None:
        if PLAN.loop == "open":
            while (slot := DISPATCHER.next_slot()) is not None:
                scheduled, queued = slot
                _wait_until(scheduled)
                self._send(scheduled, queued)
        else:
            gevent.sleep(max(0.0, PLAN.start_at - time.time()))
            end = PLAN.start_at + PLAN.total_s
            while time.time() < end:
                now = time.time()
                self._send(now)
        raise StopUser()

