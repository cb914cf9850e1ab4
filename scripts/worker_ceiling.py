"""The closed-loop ceiling of remote load generators on one core, beside a local generator's.

    .venv/bin/python scripts/worker_ceiling.py [--duration 5] [--users 64] [--rounds 3]

Starts the no-op calibration server (`bench calibrate`'s, on the server CPU) and, in interleaved rounds,
drives it closed loop from the generator CPU: (1) one local generator process, as `bench run` does;
(2) one `bench worker` joined to a master on loopback; (3) two `bench worker`s on the same core. Every
request is recorded and, for the workers, travels back to the master over Locust's messages: the figures
are requests completed per second inside the window, per core. Prints the medians and each round. A
benchmark, not a test: these machines drift, so compare the three within a round.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.load.driver import run_load
from bench.measure.known_servers import CalibrationServer, calibration_server, plan_for, window_of
from bench.ports import free_port
from bench.stats import measured
from bench.targets.launch import default_cpu_plan

BENCH = [sys.executable, "-m", "bench.cli"]


def closed_loop_rps(server: CalibrationServer, folder: Path, name: str, users: int, duration_s: float, workers: int,
                    generator: tuple[int, ...]) -> float:
    warmup = 2.0
    plan = plan_for(server, folder, name, "closed", 0.0, users, warmup, duration_s)
    started = []
    if workers:
        port = free_port()
        plan = replace(plan, remote_workers=True, processes=workers, users_per_process=max(1, users // workers),
                       master_port=port)
        cpus = ",".join(str(cpu) for cpu in generator)
        started = [subprocess.Popen([*BENCH, "worker", "--master", f"127.0.0.1:{port}", "--cells", "1",
                                     "--generator-cpus", cpus, "--idle-timeout", "60"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(workers)]
    try:
        outcome = run_load(plan, generator, folder / f"{name}.log")
    finally:
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    shift = outcome.start_at - plan.start_at
    window = window_of(replace(plan, start_at=plan.start_at + shift), warmup)
    return len(measured(outcome.samples.whole(), window)) / duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cpus = default_cpu_plan()
    kinds = {"local process": 0, "1 worker": 1, "2 workers, same core": 2}
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="worker-ceiling-") as scratch:
        folder = Path(scratch)
        with calibration_server("noop", cpus, folder) as server:
            for round_index in range(args.rounds):
                for kind, workers in kinds.items():
                    rps = closed_loop_rps(server, folder, f"r{round_index}-{workers}", args.users, args.duration,
                                          workers, cpus.generator)
                    figures[kind].append(rps)
                    print(f"round {round_index + 1}: {kind}: {rps:,.0f} req/s", flush=True)
                    time.sleep(1.0)
    print(f"server CPUs {list(cpus.server)}, generator CPUs {list(cpus.generator)}, {args.users} users, "
          f"{args.duration:g} s per measurement, median of {args.rounds}:")
    for kind, values in figures.items():
        print(f"  {kind:22s} {statistics.median(values):>9,.0f} req/s   rounds: "
              + ", ".join(f"{value:,.0f}" for value in values))


if __name__ == "__main__":
    main()
