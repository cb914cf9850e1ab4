"""A single-server queue with a fixed service time and Poisson arrivals (M/D/1): the server whose capacity
within an SLO follows from queueing alone, simulated exactly (Lindley's recursion)."""

from __future__ import annotations

import numpy as np

SERVICE_MS = 20.0  # one request at a time: 50 req/s is the server's limit
SLO_MS = 100.0


def sojourn_ms(rate: float, seconds: float, seed: int, service_ms: float = SERVICE_MS) -> np.ndarray:
    """Lindley's recursion: each request waits for the previous one, then takes SERVICE_MS."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1000.0 / rate, size=max(1, int(rate * seconds)))
    waits = np.empty(len(gaps))
    wait = 0.0
    for index, gap in enumerate(gaps):
        wait = max(0.0, wait + service_ms - gap) if index else 0.0
        waits[index] = wait
    return waits + service_ms


def true_knee(service_ms: float = SERVICE_MS, slo_ms: float = SLO_MS, overhead_ms: np.ndarray | None = None,
              resolution: float = 0.005) -> float:
    """The highest rate whose p99 stays within the SLO, from a long simulation (bisection). overhead_ms: a
    real server's delay outside its queue (network, HTTP parsing), measured, added to each request at random."""
    extra = np.random.default_rng(2)
    low, high = 1.0, 1000.0 / service_ms
    while high / low - 1 > resolution:
        middle = (low * high) ** 0.5
        sojourn = sojourn_ms(middle, 4000, seed=1, service_ms=service_ms)
        if overhead_ms is not None:
            sojourn = sojourn + extra.choice(overhead_ms, size=len(sojourn))
        if np.percentile(sojourn, 99) <= slo_ms:
            low = middle
        else:
            high = middle
    return low
