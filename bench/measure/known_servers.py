"""Servers of known behaviour (bench/load/calibration_server.py) and the load plans that measure the
generator against them: `bench calibrate`'s measurements and the open-loop ceiling share these."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.load.bodies import request_bodies, write_bodies
from bench.load.driver import startup_grace
from bench.load.plan import LoadPlan
from bench.load.schedule import Arrival
from bench.ports import free_port
from bench.processes import pin_and_tie_to_parent
from bench.results.schema import Record
from bench.stats import Window
from bench.targets.base import wait_until_ready
from bench.targets.launch import CpuPlan

HOST = "127.0.0.1"


class ServerRecord(Record):
    """What a calibration server measured itself (bench/load/calibration_server.py writes it)."""

    mode: str
    durations_ms: list[float]
    stalls: list[tuple[float, float]]


@dataclass
class CalibrationServer:
    url: str
    record_file: Path
    process: subprocess.Popen[bytes]

    def record(self) -> ServerRecord:
        return ServerRecord.model_validate_json(self.record_file.read_text())


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


def plan_for(server: CalibrationServer, folder: Path, name: str, loop: str, rate: float, users: int,
             warmup_s: float, duration_s: float, arrival: Arrival = "constant") -> LoadPlan:
    bodies = folder / "bodies.bin"
    if not bodies.exists():
        write_bodies(bodies, request_bodies(np.zeros((4, 4), dtype=np.float64), "kserve-v1", "calibration", 1, 4))
    return LoadPlan(base_url=server.url, predict_path="/", protocol="kserve-v1", model_name="calibration",
                    bodies_file=str(bodies), batch_size=1, loop="open" if loop == "open" else "closed",
                    arrival=arrival, stages=[(warmup_s + duration_s, rate)], users_per_process=users,
                    processes=1, start_at=time.time() + startup_grace(1), total_s=warmup_s + duration_s,
                    request_timeout_s=10.0, samples_dir=str(folder / name), warmup_s=warmup_s)


def window_of(plan: LoadPlan, warmup_s: float) -> Window:
    return Window(plan.start_at + warmup_s, plan.start_at + plan.total_s)
