"""Shared fixtures. Integration tests start real servers from the per-runtime environments."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def no_new_servers() -> Iterator[None]:
    """Fails the test if any process it started is still running afterwards."""
    me = psutil.Process(os.getpid())
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leftovers = [p for p in me.children(recursive=True) if p.pid not in before and p.status() != "zombie"]
    assert not leftovers, f"processes left running: {[(p.pid, p.name()) for p in leftovers]}"


@pytest.fixture(autouse=True)
def signal_handlers_restored() -> Iterator[None]:
    """bench.cli.main installs handlers of SIGINT, SIGTERM and SIGHUP for its whole process, and an interrupt
    marks the owned-resource registry: an in-process call must not leave either to the next test."""
    from bench.targets.owned import OWNED

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    OWNED.interrupted = False
