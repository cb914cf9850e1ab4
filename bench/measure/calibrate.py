"""`bench calibrate`: the load generator measures itself against servers whose behaviour is known.

1. Ceiling: requests/s on the generator CPUs against a no-op server, closed loop, for servebench's
   recording locustfile, plain Locust FastHttpUser, and wrk when installed. Target: recording costs at
   most 10% of plain FastHttpUser's ceiling. Then the open loop's ceiling (bench.measure.generator_ceiling):
   the highest Poisson rate one process keeps to. Target: 4,000 req/s, twice what it was before requests
   were prebuilt (2,000 on a slow day).
2. Accuracy: p50/p99 against a server that answers after a fixed 5 ms, compared with the server's own
   record of how long each request took. Target: p50 within 3%.
3. Coordinated omission: p99 in open and closed loop against a server that freezes 200 ms every 2 s,
   compared with the true p99 an open-loop client sees (computed from the server's stall log and the
   schedule). Target: open loop within 10%; closed loop is shown to be far off.

The figures are frozen models (CalibrationReport down to each loop's Latency), so the table reads
attributes and `--json` is their plain dump, readable back with CalibrationReport.from_json.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from bench.events import EventHook, Message
from bench.load.driver import run_load
from bench.measure.generator_ceiling import OpenLoopCeiling, measure_open_loop_ceiling
from bench.measure.known_servers import calibration_server, plan_for, window_of
from bench.processes import pin_and_tie_to_parent
from bench.results.schema import Latency, Record
from bench.stats import latency_summary, measured
from bench.targets.launch import CpuPlan

RECORDING_OVERHEAD_TARGET = 0.10
OPEN_LOOP_CEILING_TARGET_RPS = 8000.0  # one process, lateness p99 within LATENESS_P99_LIMIT_MS
P50_ERROR_TARGET = 0.03
OPEN_P99_ERROR_TARGET = 0.10
LOOPS = ("open", "closed")


def _shifted(latency: Latency, ms: float) -> Latency:
    """Every figure plus a fixed cost (the round trip a client adds to the server's own time)."""
    return Latency(**{name: None if value is None else value + ms for name, value in latency.model_dump().items()})


class Ceiling(Record):
    """Measurement 1: closed-loop requests/s against a no-op server, ours beside plain Locust and wrk."""

    servebench_rps: float
    plain_locust_rps: float | None
    wrk_rps: float | None
    servebench_rounds: tuple[float, ...]
    plain_locust_rounds: tuple[float, ...]
    recording_overhead: float | None
    users: int
    target_met: bool


class LoopAccuracy(Latency):
    """Measurement 2 in one loop: the latency measured, the truth it is judged by and its errors."""

    truth: Latency
    round_trip_ms: float
    p50_error: float | None
    p99_error: float | None
    p50_error_vs_server_side: float | None


class StallLoop(Latency):
    """Measurement 3 in one loop: the latency measured and its p99's error against the true p99."""

    p99_error: float | None


LoopT = TypeVar("LoopT", bound=Latency)


class PerLoop(Record, Generic[LoopT]):
    """One measurement in open and closed loop, and whether it met its target."""

    open: LoopT
    closed: LoopT
    target_met: bool

    def loops(self) -> tuple[tuple[str, LoopT], ...]:
        return ("open", self.open), ("closed", self.closed)


class Accuracy(PerLoop[LoopAccuracy]):
    """Measurement 2: a server answering after a fixed 5 ms, against its own record of every request."""

    server_side: Latency


class Stall(PerLoop[StallLoop]):
    """Measurement 3: a server freezing 200 ms every 2 s; the truth is what an ideal open loop sees."""

    truth: Latency


class CalibrationReport(Record):
    """Everything `bench calibrate` measured; `--json` writes as_json(), from_json() reads it back."""

    cpus: CpuPlan
    ceiling: Ceiling
    open_loop: OpenLoopCeiling | None = None  # absent from files written before it was measured
    accuracy: Accuracy
    stall: Stall
    targets_met: bool

    def as_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str) -> CalibrationReport:
        return cls.model_validate_json(text)


def measure_ceiling(cpus: CpuPlan, folder: Path, duration_s: float, users: int, events: EventHook[Message],
                    rounds: int = 3) -> Ceiling:
    """Alternate servebench and plain Locust rounds and compare medians, so that a burst of noise from
    the machine hits both sides alike rather than one whole measurement."""
    warmup = 2.0
    ours: list[float] = []
    plain: list[float] = []
    with calibration_server("noop", cpus, folder) as server:
        for round_index in range(rounds):
            events.fire(Message(f"ceiling round {round_index + 1}/{rounds}: servebench recording locustfile, "
                                f"{users} users, {duration_s:.0f} s"))
            plan = plan_for(server, folder, f"ceiling-{round_index}", "closed", 0.0, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / "ceiling.log", priority=cpus.generator_priority)
            ours.append(len(measured(outcome.samples.whole(), window_of(plan, warmup))) / duration_s)
            events.fire(Message(f"ceiling round {round_index + 1}/{rounds}: plain Locust FastHttpUser, {users} users"))
            plain_rps = _plain_locust_rps(server.url, cpus, users, warmup + duration_s, folder)
            if plain_rps:
                plain.append(plain_rps)
        wrk = _wrk_rps(server.url, cpus, users, duration_s)
    ours_median = float(np.median(ours))
    plain_median = float(np.median(plain)) if plain else None
    overhead = None if not plain_median else 1.0 - ours_median / plain_median
    return Ceiling(servebench_rps=ours_median, plain_locust_rps=plain_median, wrk_rps=wrk,
                   servebench_rounds=tuple(ours), plain_locust_rounds=tuple(plain), recording_overhead=overhead,
                   users=users, target_met=overhead is not None and overhead <= RECORDING_OVERHEAD_TARGET)


def _plain_locust_rps(url: str, cpus: CpuPlan, users: int, seconds: float, folder: Path) -> float | None:
    locustfile = Path(__file__).parents[1] / "load" / "plain_locustfile.py"
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url, "-u", str(users),
               "-r", str(users), "--run-time", f"{math.ceil(seconds)}s", "--json", "--loglevel", "WARNING"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                            preexec_fn=lambda: pin_and_tie_to_parent(cpus.generator))
    (folder / "plain-locust.log").write_text(result.stderr)
    try:
        stats = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None
    total = sum(entry.get("num_requests", 0) for entry in stats if isinstance(entry, dict))
    elapsed = max((entry.get("last_request_timestamp", 0) - entry.get("start_time", 0) for entry in stats
                   if isinstance(entry, dict)), default=0)
    return total / elapsed if elapsed > 0 else None


def _wrk_rps(url: str, cpus: CpuPlan, users: int, seconds: float) -> float | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    threads = len(cpus.generator)
    result = subprocess.run([wrk, f"-t{threads}", f"-c{max(users, threads)}", f"-d{math.ceil(seconds)}s", url + "/"],
                            capture_output=True, text=True, timeout=seconds + 30,
                            preexec_fn=lambda: pin_and_tie_to_parent(cpus.generator))
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    return float(match.group(1)) if match else None


ACCURACY_LOOPS = (("open", 64), ("closed", 1))


def measure_round_trip(cpus: CpuPlan, folder: Path, duration_s: float, rate: float,
                       events: EventHook[Message]) -> dict[str, float]:
    """The fixed cost of one request on this machine (kernel loopback, both HTTP stacks, waking an idle
    server), per loop, against the no-op server driven exactly like the 5 ms server, with the server's
    own handling time subtracted. An open-loop request meets an idle server; a closed-loop one a warm one."""
    warmup = 1.0
    round_trip: dict[str, float] = {}
    for loop, users in ACCURACY_LOOPS:
        with calibration_server("noop", cpus, folder) as server:
            events.fire(Message(f"accuracy: round trip to a no-op server, {loop} loop, {duration_s:.0f} s"))
            plan = plan_for(server, folder, f"round-trip-{loop}", loop, rate, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / f"round-trip-{loop}.log",
                               priority=cpus.generator_priority)
        client = latency_summary(measured(outcome.samples.whole(), window_of(plan, warmup))["latency_ms"].to_numpy())
        handling = latency_summary(np.asarray(server.record().durations_ms))
        round_trip[loop] = (client.p50 or 0.0) - (handling.p50 or 0.0)
    return round_trip


def measure_accuracy(cpus: CpuPlan, folder: Path, duration_s: float, rate: float,
                     events: EventHook[Message]) -> Accuracy:
    """Truth for a client is the server's own record of each request plus the idle round trip; both the
    error against that and against the server's record alone are reported."""
    warmup = 2.0
    round_trip = measure_round_trip(cpus, folder, min(duration_s, 5.0), rate, events)
    measured_latency: dict[str, Latency] = {}
    with calibration_server("fixed:5", cpus, folder) as server:
        for loop, users in ACCURACY_LOOPS:
            events.fire(Message(f"accuracy: fixed 5 ms server, {loop} loop, {duration_s:.0f} s"))
            plan = plan_for(server, folder, f"fixed-{loop}", loop, rate, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / f"fixed-{loop}.log", priority=cpus.generator_priority)
            inside = measured(outcome.samples.whole(), window_of(plan, warmup))
            measured_latency[loop] = latency_summary(inside["latency_ms"].to_numpy())
    server_side = latency_summary(np.asarray(server.record().durations_ms))

    def judged(loop: str) -> LoopAccuracy:
        latency, truth = measured_latency[loop], _shifted(server_side, round_trip[loop])
        return LoopAccuracy(**latency.model_dump(), truth=truth, round_trip_ms=round_trip[loop],
                            p50_error=_relative(latency.p50, truth.p50), p99_error=_relative(latency.p99, truth.p99),
                            p50_error_vs_server_side=_relative(latency.p50, server_side.p50))

    open_loop, closed_loop = (judged(loop) for loop in LOOPS)
    return Accuracy(open=open_loop, closed=closed_loop, server_side=server_side, target_met=all(
        loop.p50_error is not None and abs(loop.p50_error) <= P50_ERROR_TARGET for loop in (open_loop, closed_loop)))


def _relative(reported: float | None, truth: float | None) -> float | None:
    if reported is None or not truth:
        return None
    return reported / truth - 1.0


def true_stall_latencies(scheduled: np.ndarray[Any, Any], stalls: list[tuple[float, float]],
                         base_ms: float) -> np.ndarray[Any, Any]:
    """What an ideal open-loop client sees: the base time, plus the rest of any stall a request meets."""
    latency = np.full(len(scheduled), base_ms)
    for start, end in stalls:
        inside = (scheduled >= start) & (scheduled < end)
        latency[inside] += (end - scheduled[inside]) * 1000.0
    return latency


def measure_stall(cpus: CpuPlan, folder: Path, duration_s: float, rate: float, events: EventHook[Message]) -> Stall:
    """The open loop's schedule and the server's stall log give the truth both loops are judged by."""
    warmup = 2.0
    latency: dict[str, Latency] = {}
    truth: Latency | None = None
    for loop, users in (("open", 64), ("closed", 8)):
        with calibration_server("stall:200:2", cpus, folder) as server:
            events.fire(Message(f"coordinated omission: server stalling 200 ms every 2 s, {loop} loop, "
                                f"{duration_s:.0f} s"))
            plan = plan_for(server, folder, f"stall-{loop}", loop, rate, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / f"stall-{loop}.log", priority=cpus.generator_priority)
        window = window_of(plan, warmup)
        latency[loop] = latency_summary(measured(outcome.samples.whole(), window)["latency_ms"].to_numpy())
        if loop == "open":
            record = server.record()
            base = float(np.median(record.durations_ms)) if record.durations_ms else 0.0
            schedule = np.arange(window.start, window.end, 1.0 / rate)
            truth = latency_summary(true_stall_latencies(schedule, list(record.stalls), base))
    assert truth is not None
    open_loop, closed_loop = (StallLoop(**latency[loop].model_dump(), p99_error=_relative(latency[loop].p99, truth.p99))
                              for loop in LOOPS)
    return Stall(open=open_loop, closed=closed_loop, truth=truth, target_met=open_loop.p99_error is not None
                 and abs(open_loop.p99_error) <= OPEN_P99_ERROR_TARGET)


def calibrate(cpus: CpuPlan, duration_s: float, events: EventHook[Message],
              keep: Path | None = None) -> CalibrationReport:
    """The three measurements in turn, raw files in keep (else a temporary folder, removed)."""
    folder = keep or Path(tempfile.mkdtemp(prefix="servebench-calibrate-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        ceiling = measure_ceiling(cpus, folder, duration_s, users=32, events=events)
        open_loop = measure_open_loop_ceiling(cpus, folder, min(duration_s, 5.0), events)
        accuracy = measure_accuracy(cpus, folder, duration_s, rate=100.0, events=events)
        stall = measure_stall(cpus, folder, max(duration_s, 10.0), rate=100.0, events=events)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    open_loop_met = (open_loop.rps or 0.0) >= OPEN_LOOP_CEILING_TARGET_RPS
    return CalibrationReport(cpus=cpus, ceiling=ceiling, open_loop=open_loop, accuracy=accuracy, stall=stall,
                             targets_met=ceiling.target_met and open_loop_met and accuracy.target_met
                             and stall.target_met)

