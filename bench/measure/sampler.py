"""The server's CPU and memory, sampled once a second while the generator drives it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from bench.results.schema import Second
from bench.stats import Window
from bench.targets.base import Deployment


@dataclass
class ServerSampler:
    """Called by the load driver every second; a reading covers the second before it."""

    deployment: Deployment
    times: list[float] = field(default_factory=list)
    cpu: list[float | None] = field(default_factory=list)  # None: the target cannot see the server
    rss: list[float | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.deployment.cpu_percent()  # prime: the next reading covers one interval

    def __call__(self) -> None:
        self.times.append(time.time())
        self.cpu.append(self.deployment.cpu_percent())
        self.rss.append(self.deployment.rss_mb())

    def within(self, window: Window) -> tuple[list[float], list[float]]:
        inside = [i for i, t in enumerate(self.times) if window.start < t <= window.end + 1.0]
        return ([cpu for i in inside if (cpu := self.cpu[i]) is not None],
                [rss for i in inside if (rss := self.rss[i]) is not None])

    def merge_into(self, series: list[Second], origin: float) -> list[Second]:
        """The per-second client series with the server's CPU and memory of the same second."""
        by_second: dict[int, tuple[float | None, float | None]] = {}
        for moment, cpu, rss in zip(self.times, self.cpu, self.rss, strict=True):
            by_second[math.floor(moment - origin) - 1] = (cpu, rss)
        merged = []
        for second in series:
            cpu_rss = by_second.get(second.t)
            merged.append(second.model_copy(update={"server_cpu_percent": cpu_rss[0] if cpu_rss else None,
                                                    "server_rss_mb": cpu_rss[1] if cpu_rss else None}))
        return merged
