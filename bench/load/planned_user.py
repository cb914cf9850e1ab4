"""The locustfile's plan-driven mode, which `bench run` uses (imported only inside a Locust process: Locust
monkey-patches the interpreter on import).

It reads a load plan (JSON, path in SERVEBENCH_LOAD_PLAN) written by bench.load.driver, encodes real
dataset rows with the runtime's wire-protocol codec, and records every request raw to its own CSV file:
scheduled time, send time, latency from the scheduled time, service time from the send time, status,
response bytes, generator process. Locust's own statistics are never used.

Open loop: each process computes the same seeded schedule and takes every P-th slot; its users take
slots in order and sleep until each slot's time, so a slow server cannot delay later sends except by
exhausting the user pool, and then the lateness is recorded. Closed loop: each user sends the next
request as soon as the previous one returns.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust import FastHttpUser, events, task
from locust.exception import StopUser

from bench.load.bodies import request_bodies
from bench.load.plan import LoadPlan
from bench.load.schedule import arrival_offsets, slots_for_worker
from bench.protocols import codec_for

PLAN = LoadPlan.from_json(Path(os.environ["SERVEBENCH_LOAD_PLAN"]).read_text())
FLUSH_INTERVAL_S = 0.5
# gevent's loop blocks in epoll_wait, whose timeout is whole milliseconds, so a sleeping user wakes up to
# 1 ms late. At modest per-process rates users wake 1 ms early and yield until their exact time; the
# spin costs about rate x 1 ms of CPU, so above PRECISE_WAKE_MAX_RATE it is off and lateness is reported.
PRECISE_WAKE_MAX_RATE = 400.0
SPIN_WINDOW_S = 0.0012
PRECISE_WAKE = PLAN.loop == "open" and max(rate for _, rate in PLAN.stages) / PLAN.processes <= PRECISE_WAKE_MAX_RATE


class Recorder:
    """Buffers samples in memory and appends them to this process's CSV file twice a second."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.path: Path | None = None
        self.worker = 0

    def open(self, worker: int) -> None:
        self.worker = worker
        self.path = Path(PLAN.samples_dir) / f"samples-{worker}-{os.getpid()}.csv"
        gevent.spawn(self._flush_forever)

    def add(self, scheduled: float, sent: float, service_s: float, status: int, size: int) -> None:
        latency_ms = (sent - scheduled + service_s) * 1000.0
        self.rows.append(f"{scheduled:.6f},{sent:.6f},{latency_ms:.4f},{service_s * 1000.0:.4f},"
                         f"{status},{size},{self.worker}\n")

    def flush(self) -> None:
        if self.rows and self.path is not None:
            rows, self.rows = self.rows, []
            with self.path.open("a") as sink:
                sink.writelines(rows)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


RECORDER = Recorder()
STATE: dict[str, Any] = {"slots": None, "counter": None, "t0": PLAN.start_at, "active": 0}


BODIES = request_bodies(np.load(PLAN.rows_file), PLAN.protocol, PLAN.model_name, PLAN.batch_size,
                        PLAN.distinct_bodies, PLAN.seed)
HEADERS = {"Content-Type": codec_for(PLAN.protocol).content_type}


def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    worker = int(getattr(environment.runner, "worker_index", 0) or 0)
    RECORDER.open(worker)
    if PLAN.loop == "open":
        offsets = arrival_offsets(PLAN.rate_stages(), PLAN.arrival, PLAN.seed)
        STATE["slots"] = slots_for_worker(offsets, worker, PLAN.processes)
        STATE["counter"] = itertools.count()
    gevent.spawn(_quit_when_done, environment)


def _on_quitting(**_kwargs: Any) -> None:
    RECORDER.flush()


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
    RECORDER.flush()
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


class ServebenchUser(FastHttpUser):
    host = PLAN.base_url
    network_timeout = PLAN.request_timeout_s
    connection_timeout = PLAN.request_timeout_s
    max_retries = 0
    concurrency = 1

    def on_start(self) -> None:
        self.body_index = 0
        STATE["active"] += 1

    def on_stop(self) -> None:
        STATE["active"] -= 1

    def _send(self, scheduled: float) -> None:
        body = BODIES[self.body_index % len(BODIES)]
        self.body_index += 1
        sent = time.time()
        started = time.perf_counter()
        status, size = 0, 0
        try:
            with self.client.post(PLAN.predict_path, data=body, headers=HEADERS,  # type: ignore[arg-type]
                                  catch_response=True) as response:
                status = int(response.status_code or 0)
                size = len(response.content or b"")
                response.success()  # validity is judged from raw samples, not Locust's failure counters
        except Exception:  # a connection reset or timeout is a sample with status 0, never a crash
            status = 0
        RECORDER.add(scheduled, sent, time.perf_counter() - started, status, size)

    @task
    def send_requests(self) -> None:
        if PLAN.loop == "open":
            slots = STATE["slots"]
            counter = STATE["counter"]
            while True:
                index = next(counter)
                if index >= len(slots):
                    break
                scheduled = PLAN.start_at + float(slots[index])
                _wait_until(scheduled)
                self._send(scheduled)
        else:
            gevent.sleep(max(0.0, PLAN.start_at - time.time()))
            end = PLAN.start_at + PLAN.total_s
            while time.time() < end:
                now = time.time()
                self._send(now)
        raise StopUser()

