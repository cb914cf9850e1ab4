"""The generator's wake-up: never early, and the kernel timer set a bounded lead before each moment."""

from __future__ import annotations

import time

import gevent
import pytest

from bench.load import wake_timer
from bench.load.wake_timer import EarlyWake, SleepTimer, TimerFd


class RecordingTimer:
    """A coarse timer that records where it was set and returns at once (the rest is EarlyWake's)."""

    def __init__(self) -> None:
        self.moments: list[float] = []
        self.closed = False

    def wait_until(self, moment: float) -> None:
        self.moments.append(moment)

    def close(self) -> None:
        self.closed = True


def test_the_kernel_timer_is_set_a_tenth_of_the_gap_early_within_its_bounds() -> None:
    coarse = RecordingTimer()
    precise = EarlyWake(coarse)
    now = time.time()
    gaps = [0.020, 0.003, 0.0004]  # leads: capped at 0.5 ms, a tenth (0.3 ms), the floor (0.1 ms)
    moment = now
    for gap in gaps:
        moment += gap
        precise.wait_until(moment)
    precise.close()
    leads = [expected - set_at for expected, set_at in zip(_cumulative(now, gaps), coarse.moments, strict=True)]
    expected = [wake_timer.LEAD_CAP_S, 0.0003, wake_timer.LEAD_FLOOR_S]
    assert leads == pytest.approx(expected, abs=1e-6)  # epoch floats: ~0.2 us
    assert coarse.closed


def test_after_a_window_that_used_the_cpu_up_the_lead_is_lean_and_returns_after_an_idle_one() -> None:
    """A real-time process past 95% of a second is stopped for the rest of it: the spin must not get it there."""
    coarse = RecordingTimer()
    precise = EarlyWake(coarse)
    busy_until = time.perf_counter() + 2 * wake_timer.SPIN_WINDOW_S
    while time.perf_counter() < busy_until:
        pass
    moment = time.time() + 0.010
    precise.wait_before(moment)
    assert precise.lean and moment - coarse.moments[-1] == pytest.approx(wake_timer.LEAD_LEAN_S, abs=1e-6)
    time.sleep(2 * wake_timer.SPIN_WINDOW_S)
    moment = time.time() + 0.010
    precise.wait_before(moment)
    assert not precise.lean and moment - coarse.moments[-1] == pytest.approx(wake_timer.LEAD_CAP_S, abs=1e-6)


def test_a_moment_closer_than_the_lead_is_waited_for_without_the_kernel_timer() -> None:
    coarse = RecordingTimer()
    precise = EarlyWake(coarse)
    moment = time.time() + wake_timer.LEAD_FLOOR_S / 2
    precise.wait_until(moment)
    assert coarse.moments == []
    assert time.time() >= moment


@pytest.mark.parametrize("timer_class", [TimerFd, SleepTimer])
def test_no_timer_returns_before_its_moment_and_a_past_moment_returns_at_once(timer_class: type) -> None:
    precise = EarlyWake(timer_class())
    moments = [time.time() + 0.002 * step for step in range(1, 30)]
    early: list[float] = []

    def wait_all() -> None:
        for moment in moments:
            precise.wait_until(moment)
            early.append(moment - time.time())

    gevent.spawn(wait_all).join(timeout=5)
    assert len(early) == len(moments) and max(early) <= 0
    started = time.time()
    precise.wait_until(started - 1)
    assert time.time() - started < 0.05
    precise.close()


def test_other_greenlets_run_while_a_wake_up_is_awaited() -> None:
    """The last stretch before a moment yields to gevent's loop: responses keep being received."""
    precise = EarlyWake(TimerFd())
    turns: list[float] = []

    def busy() -> None:
        while len(turns) < 5:
            turns.append(time.time())
            gevent.sleep(0)

    other = gevent.spawn(busy)
    precise.wait_until(time.time() + 0.0004)  # within the floor's lead: only the yielding stretch
    other.join(timeout=1)
    precise.close()
    assert len(turns) == 5


def _cumulative(start: float, gaps: list[float]) -> list[float]:
    moments, moment = [], start
    for gap in gaps:
        moment += gap
        moments.append(moment)
    return moments
