"""The per-key cache lock: a second holder waits for the first, even across processes, and a holder
killed by SIGKILL releases it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.provision.cache_lock import cache_lock

HOLD = """
import sys, time
from pathlib import Path
from bench.provision.cache_lock import cache_lock
with cache_lock(Path(sys.argv[1])):
    Path(sys.argv[2]).write_text("held")
    time.sleep(float(sys.argv[3]))
    Path(sys.argv[2]).write_text("released")
"""


def _hold(key: Path, flag: Path, seconds: float) -> subprocess.Popen[bytes]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(key), str(flag), str(seconds)])
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.read_text() == "held"
    return holder


def test_a_second_process_waits_for_the_first(tmp_path: Path) -> None:
    key, flag = tmp_path / "env-abc", tmp_path / "flag"
    holder = _hold(key, flag, 1.0)
    with cache_lock(key):
        assert flag.read_text() == "released"  # we got the lock only after the holder let it go
    assert holder.wait(timeout=30) == 0


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    key, flag = tmp_path / "wheelhouse-abc", tmp_path / "flag"
    holder = _hold(key, flag, 600.0)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with cache_lock(key):
        assert flag.read_text() == "held"  # it never got to release it itself
