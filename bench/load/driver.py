"""Run one load test: Locust headless in a subprocess pinned to the generator CPUs, watched every second.

The driver knows an endpoint and a codec (through the plan), never a target. It returns the raw samples
merged across generator processes, the generator's own CPU use, and whether the test was interrupted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.load.plan import HEADERS_ENV, PLAN_ENV, LoadPlan
from bench.load.remote_protocol import DistributedState, WorkerReport
from bench.load.worker_auth import TOKEN_ENV
from bench.ports import LOOPBACK, free_port
from bench.process_tree import ProcessTree
from bench.processes import GeneratorPriority, pin_and_tie_to_parent, set_generator_class, stop_group
from bench.results.sample_file import ParquetSamples, merge_generator_files
from bench.results.samples import SAMPLE_COLUMNS

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_GRACE_S = 3.0  # Locust's import, fork and user spawn happen before scheduled time zero
EXTRA_GRACE_PER_PROCESS_S = 1.0


@dataclass
class LiveTick:
    """What the progress display shows each second."""

    elapsed_s: float
    requests_per_s: float
    p99_ms: float | None
    errors: int


@dataclass
class LoadOutcome:
    samples: ParquetSamples  # every generator process's rows, merged in scheduled order
    generator_cpu_max: float | None
    generator_cpu_mean: float | None
    exit_code: int | None
    interrupted: bool
    log_path: Path
    generator_cpu_series: list[float] = field(default_factory=list)
    stopped_early: str | None = None  # why the load was cut short: the probe had clearly failed
    start_at: float = 0.0  # scheduled time zero as it happened (remote workers: set once they were ready)
    workers: tuple[WorkerReport, ...] = ()  # remote workers, as their master recorded them
    error: str | None = None  # what kept the load from running at all (remote workers that never came)
    master_error: str | None = None  # what the master of remote workers stopped the cell for once it had begun
    refused: tuple[str, ...] = ()  # connections refused for want of the run's token (host name first)
    scheduling: str | None = None  # the local generator's scheduling class (bench.processes.set_generator_class)


StopRule = Callable[[LiveTick], str | None]  # a reason to stop the load now, or None to go on


def startup_grace(processes: int) -> float:
    return STARTUP_GRACE_S + EXTRA_GRACE_PER_PROCESS_S * (processes - 1)


def remote_wait(plan: LoadPlan) -> float:
    """How long a master of remote workers may take before scheduled time zero: the workers' joining, their
    clocks, the start's lead."""
    return plan.worker_wait_s + 25.0 if plan.remote_workers else 0.0


class SampleTail:
    """Reads the generator processes' CSV files incrementally for the live display."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offsets: dict[Path, int] = {}

    def new_rows(self) -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        for path in sorted(self.folder.glob("samples-*.csv")):
            with path.open("rb") as source:
                source.seek(self.offsets.get(path, 0))
                chunk = source.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for line in complete.splitlines():
                fields = line.split(b",")
                if len(fields) == len(SAMPLE_COLUMNS):
                    status = int(fields[4])
                    if 200 <= status < 300:
                        latencies.append(float(fields[2]))
                    else:
                        errors += 1
        return latencies, errors


def locust_command(plan: LoadPlan) -> list[str]:
    users = plan.users_per_process * plan.processes
    run_time = math.ceil(startup_grace(plan.processes) + plan.total_s + plan.request_timeout_s + 5 + remote_wait(plan))
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", plan.base_url,
               "-u", str(users), "-r", str(users), "--run-time", f"{run_time}s",
               "--stop-timeout", str(math.ceil(plan.request_timeout_s)), "--only-summary", "--loglevel", "WARNING"]
    if plan.remote_workers:
        command += ["--master", "--expect-workers", str(plan.processes),
                    "--expect-workers-max-wait", str(math.ceil(plan.worker_wait_s)),
                    "--master-bind-host", plan.master_bind, "--master-bind-port", str(plan.master_port)]
    elif plan.processes > 1:  # the master its forked workers join: on loopback, never Locust's default *:5557
        command += ["--processes", str(plan.processes), "--master-bind-host", plan.master_bind,
                    "--master-bind-port", str(plan.master_port), "--master-host", plan.master_bind,
                    "--master-port", str(plan.master_port)]
    return command


def missing_workers(plan: LoadPlan, state: DistributedState | None) -> str:
    """Why remote workers' load never started, for the cell's error."""
    if state is not None and state.error:
        return state.error
    joined = len(state.workers) if state is not None else 0
    refused = f"; refused for want of the run's token: {', '.join(state.refused)}" if state and state.refused else ""
    return (f"only {joined} of {plan.processes} worker(s) joined {plan.master_bind}:{plan.master_port} within "
            f"{plan.worker_wait_s:.0f} s (start `bench worker --master HOST:{plan.master_port}` on each worker host, "
            f"with {TOKEN_ENV} set){refused}")


def run_load(plan: LoadPlan, generator_cpus: tuple[int, ...], log_path: Path,
             on_tick: Callable[[LiveTick], None] = lambda _tick: None,
             every_second: Callable[[], None] = lambda: None, stop_when: StopRule | None = None,
             window: tuple[float, float] | None = None, headers: Sequence[tuple[str, str]] = (),
             worker_token: str | None = None, *, priority: GeneratorPriority) -> LoadOutcome:
    """Run the plan to completion (or Ctrl-C, or until stop_when gives a reason); plan.start_at should be
    now + startup_grace(). The samples are merged into samples_dir/samples.parquet, with in_window marked
    when the measured window is given. priority: the generator's scheduling class where it has CPUs of its own."""
    samples_dir = Path(plan.samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    if plan.processes > 1 and not plan.remote_workers:  # two runs at once must not meet on one port
        plan = replace(plan, master_bind=LOOPBACK, master_port=free_port())
    plan_file = samples_dir / "plan.json"
    plan_file.write_text(plan.to_json())
    command = locust_command(plan)
    deadline = time.time() + startup_grace(plan.processes) + plan.total_s + plan.request_timeout_s + 30 \
        + remote_wait(plan)
    start_at = plan.start_at if not plan.remote_workers else math.inf  # remote: once the master says
    cpu_series: list[float] = []
    interrupted = False
    stopped_early: str | None = None
    tail = SampleTail(samples_dir)
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, env={**os.environ, PLAN_ENV: str(plan_file), "PYTHONUNBUFFERED": "1",
                          HEADERS_ENV: json.dumps([list(header) for header in headers]),
                          **({TOKEN_ENV: worker_token} if worker_token else {})},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: pin_and_tie_to_parent(generator_cpus),
        )
        # Real-time processes of one priority do not share a CPU by turns: one that is busy holds the others
        # off. So only a local generator whose processes each have a CPU of their own (a remote master sends
        # nothing; `bench worker`s may share a host's cores and stay in the normal class).
        own_cpus = not plan.remote_workers and plan.processes <= len(generator_cpus)
        scheduling = set_generator_class(process.pid, priority) if own_cpus else "normal (shared CPUs)"
        log.write(f"servebench: the generator runs in the {scheduling} scheduling class\n".encode())
        tree = ProcessTree(process.pid)
        tree.per_process_cpu_percent()
        try:
            while process.poll() is None:
                time.sleep(1.0)
                per_process = tree.per_process_cpu_percent()
                if plan.remote_workers and start_at == math.inf:
                    state = DistributedState.read(samples_dir)
                    if state is not None and state.start_at is not None:
                        start_at = state.start_at
                if per_process and time.time() > start_at:
                    cpu_series.append(max(per_process))
                every_second()
                latencies, errors = tail.new_rows()
                tick = LiveTick(max(time.time() - start_at, -1e9), float(len(latencies)),
                                float(np.percentile(latencies, 99)) if latencies else None, errors)
                on_tick(tick)
                stopped_early = stop_when(tick) if stop_when is not None else None
                if stopped_early is not None:
                    log.write(f"servebench: stopping the load early: {stopped_early}\n".encode())
                    break
                if time.time() > deadline:
                    log.write(b"servebench: load generator overran its deadline; killing it\n")
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop_group(process, 10)
    if not plan.remote_workers:
        samples = merge_generator_files(samples_dir, samples_dir / "samples.parquet", window)
        return LoadOutcome(samples, max(cpu_series) if cpu_series else None,
                           float(np.mean(cpu_series)) if cpu_series else None, process.returncode, interrupted,
                           log_path, cpu_series, stopped_early, start_at=plan.start_at, scheduling=scheduling)
    return _remote_outcome(plan, samples_dir, window, process.returncode, interrupted, log_path, stopped_early)


def _remote_outcome(plan: LoadPlan, samples_dir: Path, window: tuple[float, float] | None, exit_code: int | None,
                    interrupted: bool, log_path: Path, stopped_early: str | None) -> LoadOutcome:
    """Remote workers' samples (written by their master as they came), merged with the window moved to the
    start the master chose; the generator's CPU is the workers' own, as they reported it."""
    state = DistributedState.read(samples_dir)
    start_at = state.start_at if state is not None and state.start_at is not None else None
    shift = (start_at - plan.start_at) if start_at is not None else 0.0
    moved = (window[0] + shift, window[1] + shift) if window is not None else None
    samples = merge_generator_files(samples_dir, samples_dir / "samples.parquet", moved)
    workers = state.workers if state is not None else ()
    cpu_max = [worker.cpu_percent_max for worker in workers if worker.cpu_percent_max is not None]
    cpu_mean = [worker.cpu_percent_mean for worker in workers if worker.cpu_percent_mean is not None]
    return LoadOutcome(samples, max(cpu_max) if cpu_max else None, float(np.mean(cpu_mean)) if cpu_mean else None,
                       exit_code, interrupted, log_path, [], stopped_early,
                       start_at=start_at if start_at is not None else plan.start_at, workers=workers,
                       error=None if start_at is not None or interrupted else missing_workers(plan, state),
                       master_error=state.error if state is not None and start_at is not None else None,
                       refused=state.refused if state is not None else ())
