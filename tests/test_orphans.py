"""What a dead harness left running is found by the owner mark its children inherit and removed; a live
harness's processes and InferenceServices are left alone. Real processes; the cluster listing is canned."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from bench.processes import started_at
from bench.targets.kserve.reaping import OWNER_KEYS, reap_inference_services
from bench.targets.kserve.runner import Result, Runner
from bench.targets.orphans import OWNER_ENV, Owner, owner_mark, reap_orphan_processes

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); " \
                  "time.sleep(120)"


def dead_owner() -> tuple[int, str]:
    """The pid and start time of a process that ran and has exited: a harness that no longer runs."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    mark = owner_mark(process.pid)
    process.wait()
    pid, _, started = mark.partition(":")
    return int(pid), started


def marked(mark: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], env={**os.environ, OWNER_ENV: mark},
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "up"  # its handler is set
    return process


def test_a_dead_harness_s_process_is_killed_and_named_even_when_it_ignores_sigterm() -> None:
    pid, started = dead_owner()
    orphan = marked(f"{pid}:{started}")
    try:
        removed = reap_orphan_processes()
        orphan.wait(timeout=10)  # SIGTERM was ignored: SIGKILL after the grace (psutil took its exit status)
        assert not psutil.pid_exists(orphan.pid)
        (line,) = [line for line in removed if line.startswith(f"process {orphan.pid} ")]
        assert f"its harness, pid {pid}, no longer runs" in line and "python" in line
    finally:
        orphan.kill()


def test_a_live_harness_s_process_and_unmarked_ones_are_left_alone() -> None:
    mine, unmarked = marked(owner_mark(os.getpid())), subprocess.Popen([sys.executable, "-c", "import time; "
                                                                        "time.sleep(120)"])
    try:
        removed = reap_orphan_processes()
        assert not any(line.startswith((f"process {mine.pid} ", f"process {unmarked.pid} ")) for line in removed)
        assert mine.poll() is None and unmarked.poll() is None
    finally:
        mine.kill()
        unmarked.kill()
        mine.wait()
        unmarked.wait()


def test_a_reused_pid_does_not_keep_an_orphan_alive() -> None:
    """The mark holds the start time: a process now running under the owner's pid is another process."""
    me = psutil.Process()
    reused = f"{me.pid}:{me.create_time() - 1000:.2f}"
    orphan = marked(reused)
    try:
        assert any(line.startswith(f"process {orphan.pid} ") for line in reap_orphan_processes())
    finally:
        orphan.kill()
        orphan.wait()


class ListingRunner(Runner):
    """A cluster that lists the given InferenceServices; every command is kept in `history`."""

    def __init__(self, items: list[dict[str, object]]) -> None:
        super().__init__()
        self.items = items

    def run(self, *command: str, probe: bool = False, check: bool = True, timeout: float = 900) -> Result:
        self.history.append(list(command))
        return Result(0, json.dumps({"items": self.items}) if "get" in command else "")


def isvc(name: str, pid: int, started: str | None, host: str) -> dict[str, object]:
    labels = Owner(pid, started, host).labels(*OWNER_KEYS)
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "servebench", **labels}}}


def test_only_inference_services_of_dead_harnesses_on_this_host_are_deleted() -> None:
    pid, started = dead_owner()
    host = socket.gethostname()
    runner = ListingRunner([isvc("dead-here", pid, started, host), isvc("alive", os.getpid(),
                                                                         started_at(os.getpid()), host),
                            isvc("dead-elsewhere", pid, started, "another-host"),
                            {"metadata": {"name": "unlabelled", "labels": {}}}])
    removed = reap_inference_services(runner)
    # the same listing answers for InferenceServices and for the worker Deployment
    assert removed == [f"InferenceService dead-here (its harness, pid {pid}, no longer runs)",
                       f"Deployment dead-here (its harness, pid {pid}, no longer runs)"]
    deletes = [command for command in runner.history if "delete" in command]
    assert [command[4:6] for command in deletes] == [["inferenceservice", "dead-here"], ["deployment", "dead-here"]]
    listings = [command for command in runner.history if "get" in command]
    assert "app.kubernetes.io/name=servebench-workers" in listings[1][listings[1].index("--selector") + 1]


def test_a_cluster_that_cannot_be_listed_reaps_nothing(tmp_path: Path) -> None:
    class Unreachable(Runner):
        def run(self, *command: str, probe: bool = False, check: bool = True, timeout: float = 900) -> Result:
            return Result(1, "", "The connection to the server was refused")

    assert reap_inference_services(Unreachable()) == []
