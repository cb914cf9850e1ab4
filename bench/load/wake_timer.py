"""Waking a gevent greenlet at an exact wall-clock time, to the tens of microseconds.

gevent's own sleep waits in epoll with a timeout in whole milliseconds, so it wakes up to 1 ms late; the
generator once spun in the last millisecond instead, which costs about a millisecond of CPU per request and
was switched off above 400 req/s per process. A Linux timerfd (reached through ctypes) is a descriptor the
kernel makes readable at an absolute CLOCK_REALTIME time with a high-resolution timer: gevent's loop watches
it like a socket, first among whatever else became readable in the same turn (libev's highest priority). That
alone wakes 50-500 us late here (the loop's own turn, responses handled in the turn before, and a virtual CPU's
wake-up from idle), so the timer is set a little early and the last stretch yields to the loop (other greenlets
keep receiving responses) until HOLD_S before the moment, then waits without yielding, so that a response
handled just then cannot make the send late. The wake-up alone (scripts/wake_timing.py, 2026-12-07): lateness
p50 0.000-0.001 ms and p99 0.02-0.08 ms at 200 and 2,000 wake-ups a second, against gevent's sleep's p50
0.56-0.70 and p99 1.09-1.24 ms.
Elsewhere (no timerfd) it falls back to gevent's sleep.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from typing import Protocol

import gevent
from gevent.hub import get_hub

CLOCK_REALTIME = 0  # time.time()'s clock: schedules are wall-clock times
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29  # prctl: how late the kernel may fire this thread's timers to batch wake-ups
LOOP_PRIORITY_MAX = 2  # libev's EV_MAXPRI: watchers of higher priority are called first in a turn of the loop
TIMER_SLACK_NS = 1  # the default, 50 us, is half the lateness allowed
# How early the kernel timer is set: a tenth of the gap since the previous wake-up, so yielding to the loop
# until the moment costs at most a tenth of the waiting, within [0.2 ms, 0.5 ms] (the floor covers the
# usual wake-up delay: at 2,000 req/s on onnx, lateness p99 0.09-0.39 ms with a 0.1 ms floor and 0.07-0.09 ms
# with 0.2 ms, for 6% more of the generator's CPU, 2026-12-07; the cap limits the cost at low rates).
LEAD_SHARE = 0.1
LEAD_FLOOR_S = 0.0002
LEAD_CAP_S = 0.0005
HOLD_S = 0.00002  # the last stretch's final part, spent without yielding (longer held responses up longer)
# Waiting out the last stretch on the CPU is a refinement the process must afford: a real-time process that
# holds its CPU leaves a normal-class task there 50 ms of every second (Linux 6.12+'s fair server; before,
# sched_rt_runtime_us stops it at 95% of the second whatever else waits). At 8,000 req/s the spin held the CPU
# and, with a normal process of this session's busy on that CPU, the generator stalled 50 ms every 1.03 s
# (2026-12-07). So the lead shrinks to LEAD_LEAN_S (about the kernel timer's own wake-up delay here) in each
# SPIN_WINDOW_S after one in which the process used more than SPIN_CPU_SHARE_MAX of its CPU: what the spin
# leaves free is then given back in small pieces, not in one stall (0.8 against 0.9, interleaved at 8,000
# req/s: lateness p99 1.6-2.0 ms against 2.1-10.3).
SPIN_CPU_SHARE_MAX = 0.8
SPIN_WINDOW_S = 0.05
LEAD_LEAN_S = 0.00003


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class WakeTimer(Protocol):
    def wait_until(self, moment: float) -> None:
        """Return at `moment` (time.time()'s clock), or at once when it has passed."""

    def close(self) -> None: ...


class SleepTimer:
    """gevent's sleep: whole-millisecond wake-ups (the fallback where there is no timerfd)."""

    def wait_until(self, moment: float) -> None:
        delay = moment - time.time()
        if delay > 0:
            gevent.sleep(delay)

    def close(self) -> None:
        pass


class TimerFd:
    """One timerfd, armed for each wake-up at an absolute time; gevent waits for it to become readable."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                                  ctypes.POINTER(_Itimerspec)]
        libc.prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0)  # best effort: without it, 50 us later
        fd = int(libc.timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._spec = _Itimerspec()
        # one watcher for every wake-up, first in its turn of the loop: when responses become readable in the
        # same turn, the dispatcher runs before their users do
        self._watcher = get_hub().loop.io(fd, 1)
        self._watcher.priority = LOOP_PRIORITY_MAX

    def wait_until(self, moment: float) -> None:
        if moment <= time.time():
            return
        seconds = int(moment)
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = max(1, int((moment - seconds) * 1e9))  # 0 would disarm the timer
        if self._settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        while True:
            get_hub().wait(self._watcher)
            try:
                os.read(self.fd, 8)  # the expiry count: reading it clears readiness for the next arming
                return
            except BlockingIOError:  # woken without an expiry (another waiter's wake-up): wait again
                continue

    def close(self) -> None:
        self._watcher.close()
        os.close(self.fd)


class EarlyWake:
    """A kernel timer to just before each moment, then `arrive_at` for the last stretch."""

    def __init__(self, coarse: WakeTimer) -> None:
        self._coarse = coarse
        self._previous = time.time()
        self._window_start = time.perf_counter()
        self._window_cpu = time.process_time()
        self.lean = False  # the previous window used the CPU up: leads are LEAD_LEAN_S

    def wait_before(self, moment: float) -> None:
        """Return at most a lead (LEAD_FLOOR_S..LEAD_CAP_S, or LEAD_LEAN_S while lean) before `moment`, or at
        once when that has passed."""
        self._track_cpu()
        spun = min(LEAD_CAP_S, max(LEAD_FLOOR_S, LEAD_SHARE * (moment - self._previous)))
        lead = LEAD_LEAN_S if self.lean else spun
        self._previous = moment
        if moment - time.time() > lead:
            self._coarse.wait_until(moment - lead)

    def _track_cpu(self) -> None:
        now = time.perf_counter()
        if now - self._window_start >= SPIN_WINDOW_S:
            cpu = time.process_time()
            self.lean = (cpu - self._window_cpu) / (now - self._window_start) > SPIN_CPU_SHARE_MAX
            self._window_start, self._window_cpu = now, cpu

    def wait_until(self, moment: float) -> None:
        self.wait_before(moment)
        arrive_at(moment)

    def close(self) -> None:
        self._coarse.close()


def arrive_at(moment: float) -> None:
    """The last stretch to `moment`: turns of gevent's loop (other greenlets keep receiving) until HOLD_S before
    it, then a wait that yields to nobody, so a response handled just then cannot make the send late."""
    while moment - time.time() > HOLD_S:
        gevent.sleep(0)
    while time.time() < moment:
        pass


def early_wake() -> EarlyWake:
    """A timerfd woken a little early where the kernel has one (Linux), else gevent's sleep (then the last
    stretch starts up to a millisecond late)."""
    try:
        return EarlyWake(TimerFd())
    except (OSError, AttributeError, TypeError):
        return EarlyWake(SleepTimer())
