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

A remote worker (`bench worker`, bench.load.remote_worker) has no plan file: the master sends the plan and
the rows over Locust's messages, and `PROCESS.configure` is called then; its samples go back the same way.

Open loop: each process computes the same seeded schedule and takes every P-th slot. One dispatcher waits
until each slot's time and sends its request itself on the connection of an idle user, the most recently
idle first, who then receives the response; so neither a slow server nor responses arriving at once delay
later sends, except by exhausting the user pool (then the slot waits for the next user to come back, who
sends it, and the lateness is recorded). Service time runs from the send to the response's arrival as the
kernel stamped it (bench.load.connection), not to when this process got round to reading it.
Most-recently-idle first keeps a few connections busy at modest rates: when every user claimed a slot in
advance, each of the 256 connections sat idle for 256 slots (5 s at 50 req/s), just past uvicorn's 5-second
keep-alive, and a request now and then met a connection the server was closing (status 0). Closed loop: each
user sends the next request as soon as the previous one returns.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from gevent.hub import Waiter, get_hub
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner

from bench.load.bodies import read_bodies
from bench.load.connection import Endpoint, KeepAliveConnection, prebuilt_posts
from bench.load.grpc_connection import GrpcConnection, use_gevent
from bench.load.plan import HEADERS_ENV, PLAN_ENV, LoadPlan
from bench.load.schedule import worker_slots
from bench.load.wake_timer import arrive_at, early_wake
from bench.protocols import codec_for
from bench.results.samples import DROPPED_ROW, SAMPLE_ROW

FLUSH_INTERVAL_S = 0.5
START_WAIT_S = 30.0  # a remote worker's users wait this long at most for the master's start
Sink = Callable[[list[str]], None]  # where a process's sample lines go: its CSV file, or the master


class Generator:
    """What this process sends and when: the plan (start_at in this host's clock), the ready requests, and
    the shift that turns this host's clock into the master's for the recorded times."""

    def __init__(self, plan: LoadPlan, bodies: list[bytes], headers: list[tuple[str, str]],
                 shift_s: float = 0.0) -> None:
        self.plan = plan
        self.shift_s = shift_s
        self.codec = codec_for(plan.protocol)
        self.headers = headers
        self.endpoint: Endpoint | None = None
        self.requests: list[bytes]
        self._turn = 0
        if self.codec.transport == "grpc":
            use_gevent()
            self.requests = list(bodies)  # sent as they are: the channel frames them
        else:
            self.endpoint = Endpoint.from_url(plan.base_url, plan.verify_tls, plan.ca_cert)
            self.requests = prebuilt_posts(self.endpoint, plan.predict_path, self.codec.content_type, bodies, headers)

    def next_request(self) -> bytes:
        """The ready requests in turn, whoever sends next."""
        request = self.requests[self._turn % len(self.requests)]
        self._turn += 1
        return request

    def connection(self) -> KeepAliveConnection | GrpcConnection:
        if self.endpoint is None:
            return GrpcConnection(self.plan.base_url, self.plan.predict_path, self.plan.request_timeout_s,
                                  self.headers)
        return KeepAliveConnection(self.endpoint, self.plan.request_timeout_s)


class Recorder:
    """Buffers samples in memory and appends them to this process's CSV file twice a second. Once closed
    (the run's end) it records nothing more: what was unfinished then has been recorded as such."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.sink: Sink | None = None
        self.worker = 0
        self.shift_s = 0.0  # this host's clock to the master's: recorded times are all in the master's clock
        self.closed = False
        self.late_count = 0  # how late this process sent: count, sum and max of send minus schedule
        self.late_sum_s = 0.0
        self.late_max_s = 0.0

    def open(self, worker: int, sink: Sink, shift_s: float = 0.0) -> None:
        self.worker = worker
        self.sink = sink
        self.shift_s = shift_s
        gevent.spawn(self._flush_forever)

    def add(self, scheduled: float, sent: float, service_s: float, status: int, size: int, queued: bool) -> None:
        if self.closed:
            return
        late = sent - scheduled
        self.late_count += 1
        self.late_sum_s += late
        self.late_max_s = max(self.late_max_s, late)
        latency_ms = (late + service_s) * 1000.0
        scheduled, sent = scheduled + self.shift_s, sent + self.shift_s
        self.rows.append(SAMPLE_ROW % (scheduled, sent, latency_ms, service_s * 1000.0, status, size, self.worker,
                                       queued))

    def unfinished(self, scheduled: float, sent: float | None, end: float) -> None:
        """A request the run ended on: still in flight (failed, status 0) or never sent (dropped)."""
        latency_ms = (end - scheduled) * 1000.0
        scheduled, end = scheduled + self.shift_s, end + self.shift_s
        sent = None if sent is None else sent + self.shift_s
        if sent is None:
            self.rows.append(DROPPED_ROW % (scheduled, latency_ms, self.worker))
        else:
            self.rows.append(SAMPLE_ROW % (scheduled, sent, latency_ms, (end - sent) * 1000.0, 0, 0, self.worker, 0))

    def flush(self) -> None:
        if self.rows and self.sink is not None:
            rows, self.rows = self.rows, []
            self.sink(rows)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


Connection = KeepAliveConnection | GrpcConnection


@dataclass(frozen=True)
class Slot:
    scheduled: float
    sent: float | None  # when the dispatcher sent it; None: the user sends it (a slot that waited for a user)
    queued: bool = False  # it came due while every user was busy


class SlotDispatcher:
    """Sends each scheduled request itself, on the connection of an idle user (the most recently idle first),
    and hands the user the response to wait for. It wakes on a kernel timer set a little early
    (bench.load.wake_timer) and waits out the last stretch, its final part without yielding: receiving never
    delays a send (a response handled late still carries its arrival time, bench.load.connection). A slot that
    comes due while every user is busy waits for the first user back, who sends it (late, and recorded so)."""

    def __init__(self, in_flight: dict[int, tuple[float, float | None]]) -> None:
        self.idle: list[tuple[Waiter[Slot | None], Connection]] = []  # a stack: the last user back gets the next slot
        self.pending: deque[float] = deque()  # slots that came due while every user was busy
        self.done = False
        self.in_flight = in_flight

    def run(self, generator: Generator, slots: Iterable[float]) -> None:
        start_at = generator.plan.start_at
        timer = early_wake()
        try:
            for offset in slots:
                scheduled = start_at + offset
                timer.wait_before(scheduled)
                if self.done:  # closed: the run ended before the schedule did
                    return
                if not self.idle:
                    self.pending.append(scheduled)
                    continue
                waiter, connection = self.idle.pop()
                self.in_flight[id(connection)] = (scheduled, None)
                arrive_at(scheduled)
                if self.done:
                    hand(waiter, None)
                    return
                sent = time.time()
                connection.start(generator.next_request())
                self.in_flight[id(connection)] = (scheduled, sent)
                hand(waiter, Slot(scheduled, sent))
        finally:
            timer.close()
        self.done = True
        while self.idle:
            hand(self.idle.pop()[0], None)

    def next_slot(self, connection: Connection) -> Slot | None:
        """The user's next request: sent on its connection by the dispatcher, or a slot that waited for a user
        (this user sends it); None when the schedule is served."""
        if self.pending:
            scheduled = self.pending.popleft()
            return Slot(scheduled, None, time.time() > scheduled)
        if self.done:
            return None
        waiter: Waiter[Slot | None] = Waiter()
        self.idle.append((waiter, connection))
        slot: Slot | None = waiter.get()
        return slot

    def close(self) -> list[float]:
        """End the schedule now: the slots handed out and never taken (no user will take them)."""
        self.done = True
        dropped, self.pending = list(self.pending), deque()
        while self.idle:
            hand(self.idle.pop()[0], None)
        return dropped


def hand(waiter: Waiter[Slot | None], slot: Slot | None) -> None:
    """Wake a waiting user with its slot in the loop's next turn (a Waiter is switched from the loop only):
    lighter than an AsyncResult, which also keeps links and a value for late readers."""
    get_hub().loop.run_callback(waiter.switch, slot)


class LoadProcess:
    """Everything one generator process holds for a run, on one object (as Locust's Environment does): the
    generator once known (at import with a plan file; a remote worker's when the master's plan arrives),
    whether the schedule may start, the recorder, the dispatcher, the requests in flight and the users still
    active. A remote worker (bench.load.remote_worker) begins at the master's start itself and is told when
    its share is served; a master of remote workers tells them to stop before it exits."""

    def __init__(self) -> None:
        self.generator: Generator | None = None
        self.started = Event()
        self.remote = False
        self.on_finished: Callable[[], None] | None = None
        self.master_stops_workers = False
        self.recorder = Recorder()
        # per connection: the scheduled time of the slot it holds and, once sent, the send time of its request
        self.in_flight: dict[int, tuple[float, float | None]] = {}
        self.dispatcher = SlotDispatcher(self.in_flight)
        self.active_users = 0

    def configure(self, generator: Generator) -> None:
        self.generator = generator

    def current(self) -> Generator:
        if self.generator is None:
            raise RuntimeError("no load plan: neither a plan file nor a plan from the master")
        return self.generator

    def begin(self, environment: Any, worker: int, sink: Sink) -> None:
        """Start this process's share of the schedule: record into sink, dispatch slots, quit when served."""
        generator = self.current()
        plan = generator.plan
        self.recorder.open(worker, sink, generator.shift_s)
        gc.collect()
        gc.freeze()  # what Locust and the plan left is never collected again: a full collection over it stalled
        # this process 47 ms (traced 2026-12-07), late for every slot due meanwhile; the run's own garbage is small
        if plan.loop == "open":
            slots = worker_slots(plan.rate_stages(), plan.arrival_process(), plan.seed, worker,  # lazily
                                 plan.processes, warmup_s=plan.warmup_s)
            gevent.spawn(self.dispatcher.run, generator, slots)
        self.started.set()
        gevent.spawn(self._quit_when_done, environment)

    def finish(self, end: float) -> None:
        """The run's end: record every due slot never sent as dropped and every request in flight as failed,
        then stop recording, so nothing that came due is missing and nothing is counted twice."""
        recorder = self.recorder
        if recorder.closed:
            return
        for scheduled in self.dispatcher.close():
            if scheduled <= end:
                recorder.unfinished(scheduled, None, end)
        for scheduled, sent in self.in_flight.values():
            if scheduled <= end:  # a slot a user held for its last stretch counts only once due
                recorder.unfinished(scheduled, sent, end)
        recorder.closed = True
        recorder.flush()

    def _quit_when_done(self, environment: Any) -> None:
        """End the test as soon as the schedule is served and in-flight requests are back (or timed out)."""
        plan = self.current().plan
        deadline = plan.start_at + plan.total_s + plan.request_timeout_s + 1
        gevent.sleep(max(0.0, plan.start_at + 1 - time.time()))
        while time.time() < deadline:
            if time.time() > plan.start_at + 1 and self.active_users == 0 and environment.runner.user_count == 0:
                break
            gevent.sleep(0.1)
        self.finish(time.time())
        if self.on_finished is not None:
            self.on_finished()  # a remote worker: the last samples and its report to the master
        environment.runner.quit()


PROCESS = LoadProcess()


def file_sink(samples_dir: str, worker: int) -> Sink:
    """A local process's samples: appended to its own CSV file in the cell's load folder."""
    path = Path(samples_dir) / f"samples-{worker}-{os.getpid()}.csv"

    def append(rows: list[str]) -> None:
        with path.open("a") as sink:
            sink.writelines(rows)

    return append


def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    """On every process that runs users (not a master, which runs none: its slots would all be recorded as
    dropped): open the recorder, dispatch this process's share of the schedule. A remote worker does this
    itself once the master's start arrives (bench.load.remote_worker)."""
    if isinstance(environment.runner, MasterRunner):
        if not PROCESS.master_stops_workers:
            # it holds no samples; Locust's own SIGTERM handling would wait about a second for its workers,
            # which receive the same signal from the harness (it signals the whole process group)
            gevent.signal_handler(signal.SIGTERM, lambda: os._exit(0))
        return
    if PROCESS.generator is None or PROCESS.remote:
        return
    plan = PROCESS.current().plan
    worker = int(getattr(environment.runner, "worker_index", 0) or 0)
    PROCESS.begin(environment, worker, file_sink(plan.samples_dir, worker))
    gevent.signal_handler(signal.SIGTERM, _terminated)  # after Locust's own, which waits for every user


def _terminated() -> None:
    """SIGTERM (the harness interrupted or stopped the load): record what is unfinished and exit at once;
    Locust's own shutdown would first wait up to --stop-timeout for users that never finish a task."""
    PROCESS.finish(time.time())
    os._exit(0)


def _on_quitting(**_kwargs: Any) -> None:
    if PROCESS.recorder.sink is not None:
        PROCESS.finish(time.time())  # Locust's own end (its run-time limit)


events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]


class ServebenchUser(User):
    def on_start(self) -> None:
        PROCESS.started.wait(START_WAIT_S)  # a remote worker: until the master's start has arrived
        self.generator = PROCESS.current()
        self.connection = self.generator.connection()
        PROCESS.active_users += 1

    def on_stop(self) -> None:
        self.connection.close()
        PROCESS.active_users -= 1

    def _send(self, slot: Slot) -> None:
        """Send the slot's request unless the dispatcher did, wait for its response, record the sample."""
        key = id(self.connection)
        in_flight = PROCESS.in_flight
        sent = slot.sent
        if sent is None:
            in_flight[key] = (slot.scheduled, None)
            arrive_at(slot.scheduled)  # at once when due (a waiting slot, the closed loop)
            sent = time.time()
            self.connection.start(self.generator.next_request())
            in_flight[key] = (slot.scheduled, sent)
        try:
            reply = self.connection.complete()
            status, size, received_at = reply.status, reply.size, reply.received_at
            sent = reply.sent_at or sent
        except Exception:  # a connection reset, refusal or timeout is a sample with status 0, never a crash
            status, size, received_at = 0, 0, time.time()
        in_flight.pop(key, None)
        PROCESS.recorder.add(slot.scheduled, sent, max(0.0, received_at - sent), status, size, slot.queued)

    @task
    def send_requests(self) -> None:
        plan = self.generator.plan
        if plan.loop == "open":
            while (slot := PROCESS.dispatcher.next_slot(self.connection)) is not None:
                self._send(slot)
        else:
            gevent.sleep(max(0.0, plan.start_at - time.time()))
            end = plan.start_at + plan.total_s
            while time.time() < end:
                self._send(Slot(time.time(), None))
        raise StopUser()



if os.environ.get(PLAN_ENV):  # a local process (bench run's own generator): the plan is a file
    _PLAN = LoadPlan.from_json(Path(os.environ[PLAN_ENV]).read_text())
    PROCESS.configure(Generator(_PLAN, read_bodies(Path(_PLAN.bodies_file)),
                        [(str(name), str(value)) for name, value in json.loads(os.environ.get(HEADERS_ENV, "[]"))]))
