"""The ground truth `bench calibrate` compares the generator with (pure logic, no servers)."""

from __future__ import annotations

import numpy as np

from bench.measure.calibrate import true_stall_latencies


def test_requests_meeting_a_stall_wait_for_its_end() -> None:
    scheduled = np.array([0.0, 1.0, 1.05, 1.19, 1.2, 2.0])
    latency = true_stall_latencies(scheduled, [(1.0, 1.2)], base_ms=2.0)
    np.testing.assert_allclose(latency, [2.0, 202.0, 152.0, 12.0, 2.0, 2.0])


def test_uniform_arrivals_against_periodic_stalls_have_the_analytic_p99() -> None:
    """200 ms stalls every 2 s hit 10% of uniform arrivals, each waiting U(0, 200) ms: p99 is 180 ms."""
    scheduled = np.arange(0.0, 200.0, 0.001)
    stalls = [(start + 1.8, start + 2.0) for start in np.arange(0.0, 200.0, 2.0)]
    latency = true_stall_latencies(scheduled, stalls, base_ms=0.0)
    assert abs(np.percentile(latency, 99) - 180.0) < 0.5
    assert abs(np.mean(latency > 0) - 0.10) < 0.001
