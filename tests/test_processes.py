"""The load generator's scheduling class: real-time where the kernel permits it, and what it says matches what
the process got."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.processes import PRIORITY_ENV, raise_to_real_time


@pytest.fixture
def sleeper() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_the_class_reported_is_the_class_the_process_runs_in(sleeper: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRIORITY_ENV, raising=False)
    said = raise_to_real_time(sleeper)
    got = os.sched_getscheduler(sleeper)
    if said.startswith("real-time"):
        assert got == os.SCHED_FIFO and os.sched_getparam(sleeper).sched_priority > 0
    else:
        assert got == os.SCHED_OTHER and said.startswith("normal (")
    if os.geteuid() == 0 and said.startswith("normal"):
        pytest.fail(f"root was refused the real-time class: {said}")  # CI runs as root with CAP_SYS_NICE


def test_asking_for_normal_leaves_the_default_class(sleeper: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIORITY_ENV, "normal")
    assert raise_to_real_time(sleeper) == "normal (asked)"
    assert os.sched_getscheduler(sleeper) == os.SCHED_OTHER
