"""Child processes the harness owns (pinned to given CPUs, tied to the harness's life) and telling whether a
recorded process still runs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from typing import Literal

import psutil

PR_SET_PDEATHSIG = 1


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'1' or '0,2' or '2-3' -> CPU numbers; ValueError on nonsense."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-", 1)
            cpus.update(range(int(low), int(high) + 1))
        elif part:
            cpus.add(int(part))
    if not cpus:
        raise ValueError("empty CPU list")
    return tuple(sorted(cpus))


def pin_and_tie_to_parent(cpus: tuple[int, ...]) -> None:
    """For preexec_fn: set the CPU affinity, and ask Linux to SIGTERM the child if the harness dies."""
    os.sched_setaffinity(0, cpus)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


GeneratorPriority = Literal["real-time", "normal"]  # the class asked for (bench.cli.options.generator_priority)
GENERATOR_RT_PRIORITY = 10  # SCHED_FIFO priority, low among real-time ones (kernel threads use 50 and up)


def set_generator_class(pid: int, priority: GeneratorPriority) -> str:
    """Put a load generator process in the real-time class (SCHED_FIFO) unless "normal" is asked, where
    permitted (root or CAP_SYS_NICE), and say which class it runs in. A sleeping generator then wakes and sends
    the moment its timer fires instead of waiting for the harness's own work on its CPU; threads and forks it
    starts later inherit the class. Linux keeps 5% of each second for the other classes (sched_rt_runtime_us),
    so a generator that saturates its CPU cannot lock it."""
    if priority == "normal":
        return "normal (asked)"
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(GENERATOR_RT_PRIORITY))
    except OSError as exc:
        return f"normal ({exc.strerror or 'not permitted'})"
    return f"real-time (SCHED_FIFO {GENERATOR_RT_PRIORITY})"


def started_at(pid: int) -> str | None:
    """A process's start time as recorded beside its pid (pids are reused; pid and start time are not)."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def still_runs(pid: int, started: str | None) -> bool:
    """Whether the process recorded as (pid, start time) runs; without a start time, whether the pid does."""
    now = started_at(pid)
    return now is not None and (started is None or now == started)


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Stop a child started in its own process group: SIGTERM to the group (Locust flushes its samples on it),
    SIGKILL to whatever is left after grace_s, and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


OWNER_ENV = "SERVEBENCH_OWNER"  # "<pid>:<start time>" of the harness that started the process (bench.targets.orphans)
# What a server, or the model timer, inherits from the harness; the rest comes from runtime.yaml. The harness's
# environment holds what a server never needs and must not see (MLFLOW_*, AWS_*, cloud tokens, the worker token)
# and its own interpreter settings (VIRTUAL_ENV, PYTHONPATH). SERVEBENCH_TEST_* are the test double's knobs.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "JAVA_HOME",
                 OWNER_ENV)
INHERITED_PREFIXES = ("LC_", "SERVEBENCH_TEST_")


def inherited_environment(extra_prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """The allow-listed part of the harness's environment, for a process that runs a model or a tool that needs
    no more (the docker CLI: with extra_prefixes DOCKER_, XDG_ for its own settings)."""
    prefixes = INHERITED_PREFIXES + extra_prefixes
    return {key: value for key, value in os.environ.items() if key in INHERITED_ENV or key.startswith(prefixes)}
