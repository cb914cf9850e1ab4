"""`bench calibrate`: the load generator measures itself against servers whose behaviour is known.

1. Ceiling: requests/s on the generator CPUs against a no-op server, closed loop, for servebench's
   recording locustfile, plain Locust FastHttpUser, and wrk when installed. Target: recording costs at
   most 10% of plain FastHttpUser's ceiling.
2. Accuracy: p50/p99 against a server that answers after a fixed 5 ms, compared with the server's own
   record of how long each request took. Target: p50 within 3%.
3. Coordinated omission: p99 in open and closed loop against a server that freezes 200 ms every 2 s,
   compared with the true p99 an open-loop client sees (computed from the server's stall log and the
   schedule). Target: open loop within 10%; closed loop is shown to be far off.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.load.driver import run_load, startup_grace
from bench.load.plan import LoadPlan
from bench.processes import pin_and_tie_to_parent
from bench.stats import Window, latency_summary, measured
from bench.targets.base import wait_until_ready
from bench.targets.launch import CpuPlan, free_port

HOST = "127.0.0.1"
RECORDING_OVERHEAD_TARGET = 0.10
P50_ERROR_TARGET = 0.03
OPEN_P99_ERROR_TARGET = 0.10


@dataclass
class CalibrationServer:
    url: str
    record_file: Path
    process: subprocess.Popen[bytes]

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record_file.read_text())
        return data


@contextmanager
def calibration_server(mode: str, cpus: CpuPlan, folder: Path) -> Iterator[CalibrationServer]:
    """Start a calibration server on the server CPUs; on exit it is stopped and its record kept."""
    port = free_port()
    record_file = folder / f"server-{mode.replace(':', '-')}.json"
    log = (folder / f"server-{mode.replace(':', '-')}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.load.calibration_server", mode, HOST, str(port), str(record_file)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: pin_and_tie_to_parent(cpus.server),
    )
    server = CalibrationServer(f"http://{HOST}:{port}", record_file, process)
    try:
        wait_until_ready(f"{server.url}/", 15, lambda: None if process.poll() is None else "exited")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _plan(server: CalibrationServer, folder: Path, name: str, loop: str, rate: float, users: int,
          warmup_s: float, duration_s: float) -> LoadPlan:
    rows = folder / "rows.npy"
    if not rows.exists():
        np.save(rows, np.zeros((4, 4), dtype=np.float64))
    return LoadPlan(base_url=server.url, predict_path="/", protocol="kserve-v1", model_name="calibration",
                    rows_file=str(rows), batch_size=1, loop="open" if loop == "open" else "closed",
                    arrival="constant", stages=[(warmup_s + duration_s, rate)], users_per_process=users,
                    processes=1, start_at=time.time() + startup_grace(1), total_s=warmup_s + duration_s,
                    request_timeout_s=10.0, samples_dir=str(folder / name))


def _window(plan: LoadPlan, warmup_s: float) -> Window:
    return Window(plan.start_at + warmup_s, plan.start_at + plan.total_s)


Say = Callable[[str], None]


def measure_ceiling(cpus: CpuPlan, folder: Path, duration_s: float, users: int, say: Say,
                    rounds: int = 3) -> dict[str, Any]:
    """Alternate servebench and plain Locust rounds and compare medians, so that a burst of noise from
    the machine hits both sides alike rather than one whole measurement."""
    warmup = 2.0
    ours: list[float] = []
    plain: list[float] = []
    with calibration_server("noop", cpus, folder) as server:
        for round_index in range(rounds):
            say(f"ceiling round {round_index + 1}/{rounds}: servebench recording locustfile, {users} users, "
                f"{duration_s:.0f} s")
            plan = _plan(server, folder, f"ceiling-{round_index}", "closed", 0.0, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / "ceiling.log")
            ours.append(len(measured(outcome.samples, _window(plan, warmup))) / duration_s)
            say(f"ceiling round {round_index + 1}/{rounds}: plain Locust FastHttpUser, {users} users")
            plain_rps = _plain_locust_rps(server.url, cpus, users, warmup + duration_s, folder)
            if plain_rps:
                plain.append(plain_rps)
        wrk = _wrk_rps(server.url, cpus, users, duration_s)
    ours_median = float(np.median(ours))
    plain_median = float(np.median(plain)) if plain else None
    overhead = None if not plain_median else 1.0 - ours_median / plain_median
    return {"servebench_rps": ours_median, "plain_locust_rps": plain_median, "wrk_rps": wrk,
            "servebench_rounds": ours, "plain_locust_rounds": plain, "recording_overhead": overhead,
            "users": users, "target_met": overhead is not None and overhead <= RECORDING_OVERHEAD_TARGET}


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
                       say: Say) -> dict[str, float]:
    """The fixed cost of one request on this machine (kernel loopback, both HTTP stacks, waking an idle
    server), per loop, against the no-op server driven exactly like the 5 ms server, with the server's
    own handling time subtracted. An open-loop request meets an idle server; a closed-loop one a warm one."""
    warmup = 1.0
    round_trip: dict[str, float] = {}
    for loop, users in ACCURACY_LOOPS:
        with calibration_server("noop", cpus, folder) as server:
            say(f"accuracy: round trip to a no-op server, {loop} loop, {duration_s:.0f} s")
            plan = _plan(server, folder, f"round-trip-{loop}", loop, rate, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / f"round-trip-{loop}.log")
        client = latency_summary(measured(outcome.samples, _window(plan, warmup))["latency_ms"].to_numpy())
        handling = latency_summary(np.asarray(server.record()["durations_ms"]))
        round_trip[loop] = (client["p50"] or 0.0) - (handling["p50"] or 0.0)
    return round_trip


def measure_accuracy(cpus: CpuPlan, folder: Path, duration_s: float, rate: float, say: Say) -> dict[str, Any]:
    """Truth for a client is the server's own record of each request plus the idle round trip; both the
    error against that and against the server's record alone are reported."""
    warmup = 2.0
    round_trip = measure_round_trip(cpus, folder, min(duration_s, 5.0), rate, say)
    with calibration_server("fixed:5", cpus, folder) as server:
        results: dict[str, Any] = {}
        for loop, users in ACCURACY_LOOPS:
            say(f"accuracy: fixed 5 ms server, {loop} loop, {duration_s:.0f} s")
            plan = _plan(server, folder, f"fixed-{loop}", loop, rate, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / f"fixed-{loop}.log")
            latency = latency_summary(measured(outcome.samples, _window(plan, warmup))["latency_ms"].to_numpy())
            results[loop] = latency
    server_side = latency_summary(np.asarray(server.record()["durations_ms"]))
    for loop in ("open", "closed"):
        truth = {key: (value + round_trip[loop] if value is not None else None) for key, value in server_side.items()}
        results[f"{loop}_truth"] = truth
        results[f"{loop}_p50_error"] = _relative(results[loop]["p50"], truth["p50"])
        results[f"{loop}_p99_error"] = _relative(results[loop]["p99"], truth["p99"])
        results[f"{loop}_p50_error_vs_server_side"] = _relative(results[loop]["p50"], server_side["p50"])
    results["server_side"] = server_side
    results["round_trip_ms"] = round_trip
    results["target_met"] = all(abs(results[f"{loop}_p50_error"] or 1) <= P50_ERROR_TARGET
                                for loop in ("open", "closed"))
    return results


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


def measure_stall(cpus: CpuPlan, folder: Path, duration_s: float, rate: float, say: Say) -> dict[str, Any]:
    warmup = 2.0
    results: dict[str, Any] = {}
    for loop, users in (("open", 64), ("closed", 8)):
        with calibration_server("stall:200:2", cpus, folder) as server:
            say(f"coordinated omission: server stalling 200 ms every 2 s, {loop} loop, {duration_s:.0f} s")
            plan = _plan(server, folder, f"stall-{loop}", loop, rate, users, warmup, duration_s)
            outcome = run_load(plan, cpus.generator, folder / f"stall-{loop}.log")
        window = _window(plan, warmup)
        inside = measured(outcome.samples, window)
        results[loop] = latency_summary(inside["latency_ms"].to_numpy())
        if loop == "open":
            record = server.record()
            base = float(np.median(record["durations_ms"])) if record["durations_ms"] else 0.0
            schedule = np.arange(window.start, window.end, 1.0 / rate)
            truth = latency_summary(true_stall_latencies(schedule, [tuple(s) for s in record["stalls"]], base))
            results["truth"] = truth
    results["open_p99_error"] = _relative(results["open"]["p99"], results["truth"]["p99"])
    results["closed_p99_error"] = _relative(results["closed"]["p99"], results["truth"]["p99"])
    results["target_met"] = results["open_p99_error"] is not None and \
        abs(results["open_p99_error"]) <= OPEN_P99_ERROR_TARGET
    return results


def calibrate(cpus: CpuPlan, duration_s: float, say: Say, keep: Path | None = None) -> dict[str, Any]:
    folder = keep or Path(tempfile.mkdtemp(prefix="servebench-calibrate-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report: dict[str, Any] = {
            "cpus": cpus.as_dict(),
            "ceiling": measure_ceiling(cpus, folder, duration_s, users=32, say=say),
            "accuracy": measure_accuracy(cpus, folder, duration_s, rate=100.0, say=say),
            "stall": measure_stall(cpus, folder, max(duration_s, 10.0), rate=100.0, say=say),
        }
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    report["targets_met"] = all(report[key]["target_met"] for key in ("ceiling", "accuracy", "stall"))
    return report

