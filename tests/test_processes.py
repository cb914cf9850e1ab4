"""The load generator's scheduling class: real-time where the kernel permits it, and what it says matches what
the process got; the class asked for is read from the environment once, at the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.cli.options import PRIORITY_ENV, generator_priority
from bench.errors import BenchError
from bench.processes import set_generator_class


@pytest.fixture
def sleeper() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_the_class_reported_is_the_class_the_process_runs_in(sleeper: int) -> None:
    said = set_generator_class(sleeper, "real-time")
    got = os.sched_getscheduler(sleeper)
    if said.startswith("real-time"):
        assert got == os.SCHED_FIFO and os.sched_getparam(sleeper).sched_priority > 0
    else:
        assert got == os.SCHED_OTHER and said.startswith("normal (")
    if os.geteuid() == 0 and said.startswith("normal"):
        pytest.fail(f"root was refused the real-time class: {said}")  # CI runs as root with CAP_SYS_NICE


def test_asking_for_normal_leaves_the_default_class(sleeper: int) -> None:
    assert set_generator_class(sleeper, "normal") == "normal (asked)"
    assert os.sched_getscheduler(sleeper) == os.SCHED_OTHER


@pytest.mark.parametrize(("value", "priority"), [(None, "real-time"), ("", "real-time"), ("real-time", "real-time"),
                                                 ("normal", "normal"), (" normal ", "normal")])
def test_the_environment_names_the_class(value: str | None, priority: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv(PRIORITY_ENV, raising=False)
    else:
        monkeypatch.setenv(PRIORITY_ENV, value)
    assert generator_priority() == priority


def test_a_misspelled_class_is_a_usage_error_not_real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIORITY_ENV, "nromal")
    with pytest.raises(BenchError, match=PRIORITY_ENV):
        generator_priority()
