"""A remote worker's side (imported only inside a Locust worker that `bench worker` started): it takes the
plan and the rows from the master's first message, measures its clock against the master's, starts its
share of the schedule at the master's start converted to its own clock, and sends every sample back.
Protocol: bench.load.remote_protocol; clock: bench.load.clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
import psutil
from gevent.event import AsyncResult, Event

from bench.load import planned_user
from bench.load import remote_protocol as proto
from bench.load.bodies import unpack_bodies
from bench.load.clock import PING_GAP_S, PINGS, ClockReading, Exchange
from bench.load.plan import LoadPlan
from bench.load.worker_auth import TOKEN_ENV, new_nonce, proof, proves

PONG_WAIT_S = 2.0
START_WAIT_S = 30.0  # from the plan to the master's start (the master waits at most 20 s for the others)
ACK_WAIT_S = 10.0
MASTER_SILENT_S = 6.0  # no heartbeat from the master this long: it is gone, stop


class RemoteWorker:
    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.runner = environment.runner
        self.index = -1
        self.plan: LoadPlan | None = None
        self.bodies: list[bytes] = []
        self.headers: list[tuple[str, str]] = []
        self.start_clock: list[Exchange] = []
        self.pong: AsyncResult | None = None
        self.started = Event()
        self.start_at = 0.0
        self.acked = Event()
        self.cpu: list[float] = []
        self.status = Path(os.environ[proto.WORKER_STATUS_ENV]) if os.environ.get(proto.WORKER_STATUS_ENV) else None
        self.token = os.environ.get(TOKEN_ENV, "")
        self.nonce = new_nonce()
        for name, handler in ((proto.CHALLENGE, self.on_challenge), (proto.PLAN, self.on_plan),
                              (proto.PONG, self.on_pong), (proto.START, self.on_start),
                              (proto.DONE_ACK, self.on_ack), (proto.ABORT, self.on_abort)):
            self.runner.register_message(name, handler)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.quitting.add_listener(self.on_quitting)
        self.reported = False
        planned_user.PROCESS.remote = True
        planned_user.PROCESS.on_finished = self.finished
        gevent.spawn(self._watch_master)
        self.runner.send_message(proto.HELLO, {"nonce": self.nonce})
        gevent.signal_handler(signal.SIGTERM, self._terminated)

    def note(self, **facts: Any) -> None:
        """What `bench worker` shows: written to a local status file (this host's own disk)."""
        if self.status is not None:
            self.status.write_text(json.dumps(facts))

    # ---- messages from the master --------------------------------------------------------------------

    def on_challenge(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        """Prove the token (so that a worker holding another is refused by name), then check the master's
        proof: a master that cannot give one is not the run's, and gets no samples and no CPU."""
        theirs = str(msg.data.get("nonce", ""))
        self.runner.send_message(proto.PROOF, {"proof": proof(self.token, "worker", theirs, self.nonce)})
        if not proves(self.token, msg.data.get("proof"), "master", self.nonce, theirs):
            reason = f"the master at {self.runner.master_host}:{self.runner.master_port} did not prove the run's token"
            self.note(state="untrusted", reason=reason, index=self.index)
            os._exit(proto.ABORTED_EXIT)

    def on_plan(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        data = msg.data
        self.plan = LoadPlan.from_json(data["plan"])
        self.bodies = unpack_bodies(data["bodies"])
        self.headers = [(str(name), str(value)) for name, value in data["headers"]]
        self.index = int(data["index"])
        gevent.spawn(self._get_ready)

    def on_pong(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        if self.pong is not None:
            self.pong.set(Exchange(float(msg.data["sent"]), float(msg.data["master"]), time.time()))

    def on_start(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        self.start_at = float(msg.data["start_at"])
        self.started.set()

    def on_ack(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        self.acked.set()

    def on_abort(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        final = bool(msg.data.get("final", True))  # False: not wanted for this cell, the next may come
        state = "no-token" if msg.data.get("token") else "aborted" if final else "refused"
        self.note(state=state, reason=str(msg.data["reason"]), index=self.index)
        os._exit(proto.ABORTED_EXIT)

    # ---- the cell ------------------------------------------------------------------------------------

    def _exchanges(self) -> list[Exchange]:
        exchanges = []
        for _ in range(PINGS):
            self.pong = AsyncResult()
            self.runner.send_message(proto.PING, {"sent": time.time()})
            with contextlib.suppress(gevent.Timeout):
                exchanges.append(self.pong.get(timeout=PONG_WAIT_S))
            gevent.sleep(PING_GAP_S)
        return exchanges

    def _get_ready(self) -> None:
        self.start_clock = self._exchanges()
        if not self.start_clock:
            self.note(state="failed", reason="the master did not answer a clock ping", index=self.index)
            os._exit(proto.MASTER_LOST_EXIT)
        reading = ClockReading.of(self.start_clock)
        self.runner.send_message(proto.READY, {"host": socket.gethostname(), "address": self._address(),
                                               "pid": os.getpid(), "offset_ms": reading.offset_ms,
                                               "rtt_ms": reading.rtt_ms})
        assert self.plan is not None
        self.note(state="joined", index=self.index, workers=self.plan.processes, offset_ms=reading.offset_ms,
                  rtt_ms=reading.rtt_ms)

    def _address(self) -> str:
        """The local address this host reaches the master from (what tells workers on one host apart)."""
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((self.runner.master_host, self.runner.master_port))
                return str(probe.getsockname()[0])
        except OSError:
            return ""

    def on_test_start(self, **_kwargs: Any) -> None:
        gevent.spawn(self._begin)

    def _begin(self) -> None:
        if not self.started.wait(START_WAIT_S) or self.plan is None:
            self.note(state="failed", reason="no start from the master", index=self.index)
            os._exit(proto.MASTER_LOST_EXIT)
        shift = ClockReading.of(self.start_clock).offset_ms / 1000.0  # master minus this host
        local = replace(self.plan, start_at=self.start_at - shift)
        planned_user.PROCESS.configure(planned_user.Generator(local, self.bodies, self.headers, shift_s=shift))
        gevent.spawn(self._sample_cpu, local.start_at)
        planned_user.PROCESS.begin(self.environment, self.index, self._send_rows)

    def _send_rows(self, rows: list[str]) -> None:
        self.runner.send_message(proto.SAMPLES, {"rows": "".join(rows)})

    def _sample_cpu(self, start_at: float) -> None:
        process = psutil.Process()
        process.cpu_percent()
        gevent.sleep(max(0.0, start_at - time.time()))
        while True:
            gevent.sleep(1.0)
            self.cpu.append(process.cpu_percent())

    def finished(self) -> None:
        """The share is served and every sample sent: measure the clock again, report, wait for the master
        to confirm it wrote everything (so nothing is lost when this process exits)."""
        recorder = planned_user.PROCESS.recorder
        drift = ClockReading.of(self.start_clock, self._exchanges()).drift_ms if self.start_clock else None
        self.runner.send_message(proto.DONE, {
            "drift_ms": drift,
            "late_mean_ms": recorder.late_sum_s / recorder.late_count * 1000.0 if recorder.late_count else None,
            "late_max_ms": recorder.late_max_s * 1000.0 if recorder.late_count else None,
            "cpu_percent_max": max(self.cpu) if self.cpu else None,
            "cpu_percent_mean": sum(self.cpu) / len(self.cpu) if self.cpu else None})
        acked = self.acked.wait(ACK_WAIT_S)
        self.reported = True
        self.note(state="done" if acked else "unconfirmed", index=self.index)

    def on_quitting(self, **_kwargs: Any) -> None:
        """Locust's own quit from the master before this share was served: after the start, the master was
        stopped (Ctrl-C on the run: stop serving); before it, the master gave up on the cell (a worker never
        came: the next cell may still come)."""
        if self.reported:
            return
        if self.started.is_set():
            self.note(state="aborted", reason="the master stopped the cell", index=self.index)
        else:
            self.note(state="ended", reason="the master gave up on the cell before its start", index=self.index)

    def _watch_master(self) -> None:
        """Locust's own worker waits 60 s for a silent master; a run's worker should not."""
        while True:
            gevent.sleep(1.0)
            last = self.runner.last_heartbeat_timestamp
            if last is not None and time.time() - last > MASTER_SILENT_S:
                self.note(state="failed", reason="the master stopped answering", index=self.index)
                os._exit(proto.MASTER_LOST_EXIT)

    def _terminated(self) -> None:
        os._exit(0)  # `bench worker` was stopped: the master sees this worker go missing
