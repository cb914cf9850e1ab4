"""The master's side of remote workers (imported only inside the master's Locust process, whose plan says
`remote_workers`): it hands each worker the plan and the rows, answers clock pings, sends the start once
every expected worker is ready, writes the samples they send back into the cell's load folder, and keeps
distributed.json for the harness. Only workers that prove the run's token get anything (bench.load.worker_auth);
each may send at most its share of samples. Protocol: bench.load.remote_protocol.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
from locust.runners import STATE_MISSING

from bench.load import remote_protocol as proto
from bench.load.plan import LoadPlan
from bench.load.remote_protocol import DistributedState, WorkerReport
from bench.load.worker_auth import TOKEN_ENV, new_nonce, proof, proves

READY_WAIT_S = 20.0  # after the last expected worker connected, for every clock to be measured
START_LEAD_S = 1.5  # scheduled time zero this long after the start is sent: workers spawn their users
ABORT_FLUSH_S = 0.3  # for the abort messages to leave before the master exits
WATCH_S = 0.5


class RemoteMaster:
    def __init__(self, environment: Any, plan: LoadPlan, headers: list[tuple[str, str]]) -> None:
        self.environment = environment
        self.runner = environment.runner
        self.plan = plan
        self.folder = Path(plan.samples_dir)
        self.bodies = Path(plan.bodies_file).read_bytes()  # packed: checked by the worker as it unpacks
        self.headers = headers
        self.token = os.environ.get(TOKEN_ENV, "")  # from the harness's environment, never a file or argv
        self.challenges: dict[str, tuple[str, str]] = {}  # client id -> (its nonce, ours), until it proves
        self.sample_cap = proto.sample_byte_cap(plan.loop, plan.stages, plan.total_s, plan.processes)
        self.sample_bytes: dict[int, int] = {}
        self.state = DistributedState(expected=plan.processes, listening_since=time.time(),
                                      master=f"{plan.master_bind}:{plan.master_port}")
        self.clients: dict[str, int] = {}  # Locust client id -> worker index
        self.ready: dict[int, WorkerReport] = {}
        self.done: set[int] = set()
        self.counts: dict[int, int] = {}
        self.state.write(self.folder)
        for name, handler in ((proto.HELLO, self.on_hello), (proto.PROOF, self.on_proof), (proto.PING, self.on_ping),
                              (proto.READY, self.on_ready), (proto.SAMPLES, self.on_samples),
                              (proto.DONE, self.on_done)):
            self.runner.register_message(name, handler)
        environment.events.test_start.add_listener(self.on_test_start)
        gevent.signal_handler(signal.SIGTERM, self.abort)

    def _index(self, msg: Any) -> int:
        return self.clients.get(msg.node_id, -1)

    def on_hello(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        """A worker asks in: first it must prove the token (and may check ours)."""
        client_id = str(msg.node_id)
        if client_id in self.clients:
            return  # a reconnect: it has the plan
        theirs, ours = str(msg.data.get("nonce", "")) if isinstance(msg.data, dict) else "", new_nonce()
        self.challenges[client_id] = (theirs, ours)
        self.runner.send_message(proto.CHALLENGE, {"nonce": ours, "proof": proof(self.token, "master", theirs, ours)},
                                 client_id)

    def on_proof(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        client_id = str(msg.node_id)
        theirs, ours = self.challenges.pop(client_id, ("", ""))
        claimed = msg.data.get("proof") if isinstance(msg.data, dict) else None
        if not self.token or not ours or not proves(self.token, claimed, "worker", ours, theirs):
            self.state = replace(self.state, refused=(*self.state.refused, client_id))
            self.state.write(self.folder)
            self.runner.send_message(proto.ABORT, {"reason": "refused: this worker does not hold the run's token "
                                                             f"({TOKEN_ENV})", "final": True, "token": True},
                                     client_id)
            return
        if len(self.clients) >= self.plan.processes or self.state.start_at is not None:
            self.runner.send_message(proto.ABORT, {"reason": f"this cell already has its {self.plan.processes} "
                                                             "worker(s)", "final": False}, client_id)
            return
        index = len(self.clients)  # ours, contiguous: Locust's own counts refused connections too
        self.clients[client_id] = index
        payload = {"plan": self.plan.to_json(), "bodies": self.bodies, "headers": [list(pair) for pair in self.headers],
                   "index": index}
        self.runner.send_message(proto.PLAN, payload, client_id)

    def on_ping(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        self.runner.send_message(proto.PONG, {"sent": msg.data["sent"], "master": time.time()}, msg.node_id)

    def on_ready(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        index = self._index(msg)
        if index < 0:
            return
        data = msg.data
        report = WorkerReport(index=index, host=str(data["host"]), address=str(data["address"]), pid=int(data["pid"]),
                              joined_after_s=round(time.time() - self.state.listening_since, 3),
                              clock_offset_ms=float(data["offset_ms"]), clock_rtt_ms=float(data["rtt_ms"]))
        self.ready[index] = report
        self._update(report)

    def on_test_start(self, **_kwargs: Any) -> None:
        """Locust starts once the expected workers are connected: wait for their clocks, then send the start
        (before Locust's own spawn messages, which follow on the same connections)."""
        deadline = time.time() + READY_WAIT_S
        while len(self.ready) < self.plan.processes and time.time() < deadline:
            gevent.sleep(0.05)
        if len(self.ready) < self.plan.processes:
            missing = self.plan.processes - len(self.ready)
            self._fail(f"{missing} of {self.plan.processes} worker(s) joined but never reported their clock "
                       f"within {READY_WAIT_S:.0f} s")
            return
        start_at = time.time() + START_LEAD_S
        self.state = replace(self.state, start_at=start_at)
        self.state.write(self.folder)
        self.runner.send_message(proto.START, {"start_at": start_at})
        gevent.spawn(self._end_when_no_worker_is_left)

    def _end_when_no_worker_is_left(self) -> None:
        """Locust's master quits when its last worker quits, but only stops when the last one goes missing
        (killed, or its host gone): then it would wait for --run-time. End the cell once every worker has
        reported or is gone; distributed.json says which never reported."""
        while True:
            gevent.sleep(WATCH_S)
            alive = {node.id for node in self.runner.clients.all if node.state != STATE_MISSING}
            if not [client for client, index in self.clients.items() if index not in self.done and client in alive]:
                gevent.sleep(WATCH_S)  # the last report's own quit may be on its way
                self.runner.quit()
                return

    def on_samples(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        index = self._index(msg)
        if index < 0 or index in self.done:
            return
        rows: str = msg.data["rows"]
        self.sample_bytes[index] = self.sample_bytes.get(index, 0) + len(rows)
        if self.sample_bytes[index] > self.sample_cap:
            self._fail(f"worker {index} ({msg.node_id}) sent more samples than its share of the schedule "
                       f"({self.sample_bytes[index]:,} bytes, at most {self.sample_cap:,}): cut off")
            return
        with (self.folder / f"samples-{index}-remote.csv").open("a") as sink:
            sink.write(rows)
        self.counts[index] = self.counts.get(index, 0) + rows.count("\n")

    def on_done(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        index = self._index(msg)
        if index < 0 or index not in self.ready:
            return
        data = msg.data
        report = replace(self.ready[index], samples=self.counts.get(index, 0), clock_drift_ms=data.get("drift_ms"),
                         late_mean_ms=data.get("late_mean_ms"), late_max_ms=data.get("late_max_ms"),
                         cpu_percent_max=data.get("cpu_percent_max"), cpu_percent_mean=data.get("cpu_percent_mean"),
                         finished=True)
        self.done.add(index)
        self._update(report)
        self.runner.send_message(proto.DONE_ACK, {}, msg.node_id)

    def _update(self, report: WorkerReport) -> None:
        self.state = self.state.with_worker(report)
        self.state.write(self.folder)

    def _fail(self, error: str) -> None:
        self.state = replace(self.state, error=error)
        self.state.write(self.folder)
        self.abort(error)

    def abort(self, reason: str = "the master was stopped") -> None:
        """SIGTERM (the harness interrupted or stopped the cell) or a failed start: tell every worker, so none
        goes on sending, and exit at once (the master holds no samples it has not written)."""
        for client_id in self.clients:
            self.runner.send_message(proto.ABORT, {"reason": reason, "final": True}, client_id)
        gevent.sleep(ABORT_FLUSH_S)
        os._exit(0)
