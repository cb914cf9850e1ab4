"""CPU and memory of a server's whole process tree (MLServer and BentoML fork workers), and where a sampling
profiler (py-spy) must run to see that tree as it sees itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class SamplerPlace:
    """Where a sampling profiler runs against a process tree: the command that runs the profiler there (on this
    host: its executable alone), and the output folder and the tree's root pid as seen from there.

    py-spy tells a waiting thread from a running one by matching the thread ids Python records to the OS's
    threads; a process in another pid namespace (a container) records ids the host does not know, so it must
    be sampled from inside that namespace."""

    command: tuple[str, ...]
    folder: str
    pid: int


class ProcessTree:
    """Samples a root process and all its descendants; cpu_percent needs two calls to mean anything."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._known: dict[int, psutil.Process] = {}

    def sampler_place(self, executable: Path, folder: Path, cpus: tuple[int, ...]) -> SamplerPlace:
        """Where a profiler (executable, writing into folder, on cpus) samples this tree: here, as it is."""
        del cpus  # the caller pins the profiler's own process
        return SamplerPlace((str(executable),), str(folder), self.root_pid)

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            current = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            current = []
        alive: dict[int, psutil.Process] = {}
        for process in current:
            # keep the same Process object per pid so cpu_percent() measures since the last sample
            alive[process.pid] = self._known.get(process.pid, process)
        self._known = alive
        return list(alive.values())

    def rss_mb(self) -> float:
        total = 0
        for process in self.processes():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def per_process_cpu_percent(self) -> list[float]:
        """Percent of one CPU used by each process since the previous call (100 = one core busy)."""
        values = []
        for process in self.processes():
            try:
                values.append(process.cpu_percent(interval=None))
            except psutil.NoSuchProcess:
                continue
        return values

    def cpu_percent(self) -> float:
        """Percent of one CPU used by the whole tree since the previous call."""
        return sum(self.per_process_cpu_percent())
