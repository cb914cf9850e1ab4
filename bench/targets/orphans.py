"""Processes a dead harness left behind, found by the owner mark every child inherits, and removed.

A harness marks its own environment with its pid and start time (`mark_as_owner`, called once when the CLI
starts), so every process it starts inherits the mark: servers, their workers and helpers (a runtime may
start a process tree of its own, as Ray does), the Locust generators, `kubectl port-forward`. Linux keeps a
process's starting environment in /proc/<pid>/environ, so the mark survives whatever the process does with
its environment later. A SIGKILLed, OOM-killed or hung-up harness runs no cleanup; the next command that uses
a target calls `reap_orphan_processes`, which stops every marked process whose harness no longer runs and
says what it removed. Processes of a harness that still runs (a run beside this one) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from dataclasses import dataclass

import psutil

from bench.processes import OWNER_ENV, started_at, still_runs

TERM_GRACE_S = 2.0


@dataclass(frozen=True)
class Owner:
    """The harness that created something outside this process (a container, an InferenceService), recorded
    on it as labels so that a later run can tell whether its creator still runs."""

    pid: int
    started: str | None  # its start time: a pid alone is reused
    host: str  # pids mean something on this host only

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), started_at(os.getpid()), socket.gethostname())

    @classmethod
    def parse(cls, pid: str, started: str, host: str) -> Owner | None:
        """From recorded label values; None when they are incomplete (not ours to judge)."""
        return cls(int(pid), started, host) if pid.isdigit() and started and host else None

    def labels(self, pid_key: str, started_key: str, host_key: str) -> dict[str, str]:
        return {pid_key: str(self.pid), started_key: self.started or "", host_key: self.host}

    def left_it_behind(self) -> bool:
        """Whether what this owner made is an orphan: the owner ran on this host and runs no more."""
        return self.host == socket.gethostname() and not still_runs(self.pid, self.started)


def owner_mark(pid: int) -> str:
    return f"{pid}:{started_at(pid) or ''}"


def mark_as_owner() -> None:
    """Make this process the owner of everything it starts from now on (children inherit the mark)."""
    os.environ[OWNER_ENV] = owner_mark(os.getpid())


@dataclass(frozen=True)
class Orphan:
    """A process whose harness no longer runs."""

    pid: int
    command: str
    owner_pid: int

    def describe(self) -> str:
        return f"process {self.pid} ({self.command}; its harness, pid {self.owner_pid}, no longer runs)"


def _owner(process: psutil.Process) -> tuple[int, str | None] | None:
    """The harness recorded in a process's starting environment, or None when it has no mark."""
    try:
        mark = process.environ().get(OWNER_ENV)
    except (psutil.Error, OSError):  # gone, a kernel thread, or not ours to read
        return None
    if not mark:
        return None
    pid, _, started = mark.partition(":")
    return (int(pid), started or None) if pid.isdigit() else None


def _command(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        words = process.cmdline()
        if words:
            return " ".join(os.path.basename(words[0]) if index == 0 else word
                            for index, word in enumerate(words[:4]))[:100]
    return "?"


def find_orphans() -> list[Orphan]:
    """Every marked process on this machine whose harness no longer runs (never this process or its ancestors)."""
    spared = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        spared.update(parent.pid for parent in psutil.Process().parents())
    orphans = []
    owners_alive: dict[tuple[int, str | None], bool] = {}
    for process in psutil.process_iter():
        if process.pid in spared:
            continue
        owner = _owner(process)
        if owner is None:
            continue
        if owner not in owners_alive:
            owners_alive[owner] = still_runs(*owner)
        if not owners_alive[owner]:
            orphans.append(Orphan(process.pid, _command(process), owner[0]))
    return orphans


def reap_orphan_processes() -> list[str]:
    """Stop what dead harnesses left running (SIGTERM, then SIGKILL after a short grace); returns a line per
    process removed, for the user to read."""
    orphans = find_orphans()
    processes = []
    for orphan in orphans:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(orphan.pid)
            process.send_signal(signal.SIGTERM)
            processes.append(process)
    _gone, alive = psutil.wait_procs(processes, timeout=TERM_GRACE_S)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=TERM_GRACE_S)
    return [orphan.describe() for orphan in orphans]
