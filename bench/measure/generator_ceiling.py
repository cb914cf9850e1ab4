"""The open-loop generator's own ceiling: the highest Poisson rate one generator process keeps to its
schedule against a server that answers at once.

A capacity search can only trust rates the generator itself can drive, so this is measured, not assumed:
rates double from a start until a step fails (sends fall behind the schedule, or leave late), then two
bisections narrow the ceiling to about a fifth of a doubling. A rate that fails is tried once more and fails
only if it fails again: on a shared or virtual machine a stall of the host (measured here: up to 4 ms, a few
times in 5 s, on an idle CPU) can make one 5-second step late at any rate, 1,500 req/s included, and one
such stall said nothing of the generator's limit. Both tries are kept among the steps.
"""

from __future__ import annotations

from pathlib import Path

from bench.events import EventHook, Message
from bench.load.driver import run_load
from bench.measure.known_servers import calibration_server, plan_for, window_of
from bench.results.schema import Record
from bench.stats import ACHIEVED_RATE_FLOOR, measured
from bench.targets.launch import CpuPlan

LATENESS_P99_LIMIT_MS = 0.5  # sends later than this distort the fastest runtimes' latency (about 0.5 ms p50)
START_RPS = 1000.0
BISECTIONS = 2
MAX_RPS = 128_000.0


class OpenLoopStep(Record):
    """One rate tried: what the schedule held, what was sent, how late, at what generator CPU."""

    rate: float
    scheduled_rps: float
    achieved_rps: float
    lateness_p99_ms: float | None
    generator_cpu_max: float | None
    kept_up: bool


class OpenLoopCeiling(Record):
    """Measurement 1b: the highest rate kept up with, and the first one not (None: never reached)."""

    rps: float | None
    first_failed_rps: float | None
    users: int
    steps: tuple[OpenLoopStep, ...]


def kept_up(step: OpenLoopStep) -> bool:
    """Sent what was scheduled, on time. Not its CPU: an open loop waits out each send's last stretch on the
    CPU, so it reads high while the generator keeps time (the CPU is recorded, not judged)."""
    late_ok = step.lateness_p99_ms is not None and step.lateness_p99_ms <= LATENESS_P99_LIMIT_MS
    return step.achieved_rps >= ACHIEVED_RATE_FLOOR * step.scheduled_rps and late_ok


def measure_open_loop_ceiling(cpus: CpuPlan, folder: Path, duration_s: float, events: EventHook[Message],
                              users: int = 64) -> OpenLoopCeiling:
    warmup = 1.0
    steps: list[OpenLoopStep] = []
    with calibration_server("noop", cpus, folder) as server:

        def probe(rate: float) -> OpenLoopStep:
            events.fire(Message(f"open-loop ceiling: {rate:,.0f} req/s, {duration_s:.0f} s"))
            plan = plan_for(server, folder, f"open-ceiling-{rate:.0f}", "open", rate, users, warmup, duration_s,
                            arrival="poisson")
            outcome = run_load(plan, cpus.generator, folder / "open-ceiling.log", priority=cpus.generator_priority)
            window = window_of(plan, warmup)
            samples = outcome.samples.whole()  # a short probe: held whole
            inside = measured(samples, window)
            sent = ((samples["sent"] >= window.start) & (samples["sent"] < window.end)).sum()
            late = (inside["sent"] - inside["scheduled"]) * 1000.0
            step = OpenLoopStep(rate=rate, scheduled_rps=len(inside) / duration_s,
                                achieved_rps=float(sent) / duration_s,
                                lateness_p99_ms=float(late.quantile(0.99)) if len(late) else None,
                                generator_cpu_max=outcome.generator_cpu_max, kept_up=False)
            step = step.model_copy(update={"kept_up": kept_up(step)})
            steps.append(step)
            return step

        def holds(rate: float) -> bool:
            return probe(rate).kept_up or probe(rate).kept_up

        passed: float | None = None
        failed: float | None = None
        rate = START_RPS
        while rate <= MAX_RPS:
            if holds(rate):
                passed, rate = rate, rate * 2
            else:
                failed = rate
                break
        for _ in range(BISECTIONS if failed is not None and passed is not None else 0):
            assert passed is not None and failed is not None
            middle = (passed + failed) / 2
            if holds(middle):
                passed = middle
            else:
                failed = middle
    return OpenLoopCeiling(rps=passed, first_failed_rps=failed, users=users, steps=tuple(steps))
