"""Launching child processes the harness owns: pinned to given CPUs and tied to the harness's life."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def pin_and_tie_to_parent(cpus: tuple[int, ...]) -> None:
    """For preexec_fn: set the CPU affinity, and ask Linux to SIGTERM the child if the harness dies."""
    os.sched_setaffinity(0, cpus)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
