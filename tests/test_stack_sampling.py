"""Where py-spy runs and when it stops: the host or a container's pid namespace, a recording cut short by a load
that ended early (before or inside the window), and what a Docker profile from before schema 9 keeps saying."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import pytest

from bench.process_tree import ProcessTree, SamplerPlace
from bench.server_time.recorder import ProfileSettings, Recording
from bench.server_time.rules import Classifier
from bench.targets.container_tree import FOLDER, TOOL, ContainerTree, namespace_pid

RUNS = Path(__file__).parent / "data" / "runs"

# Stands in for py-spy: takes its arguments, "samples" until --duration or a SIGINT (which it handles itself, as
# py-spy does even when started with SIGINT ignored), then writes one collapsed stack per second it ran.
FAKE_PROFILER = """
import signal, sys, time
args = sys.argv[1:]
duration = float(args[args.index("--duration") + 1]); output = args[args.index("--output") + 1]
stopped = []
signal.signal(signal.SIGINT, lambda *_: stopped.append(1))
started = time.monotonic()
while not stopped and time.monotonic() - started < duration:
    time.sleep(0.02)
with open(output, "w") as out:
    out.write(f'process 1:"server";handle (server.py) {max(1, round(time.monotonic() - started))}\\n')
"""


class FakeProfilerTree(ProcessTree):
    """A tree whose profiler is FAKE_PROFILER, run on this host."""

    def __init__(self, script: Path) -> None:
        super().__init__(os.getpid())
        self.script = script

    def sampler_place(self, executable: Path, folder: Path, cpus: tuple[int, ...]) -> SamplerPlace:
        return SamplerPlace((sys.executable, str(self.script)), str(folder), self.root_pid)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Children started inside inherit SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[Recording]:
    script = tmp_path / "fake_profiler.py"
    script.write_text(FAKE_PROFILER)
    made = Recording(ProfileSettings(tmp_path, tuple(sorted(os.sched_getaffinity(0)))), FakeProfilerTree(script),
                     "cell")
    yield made
    process = made._process
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def test_the_host_samples_a_local_tree_as_it_is() -> None:
    place = ProcessTree(4321).sampler_place(Path("/venv/bin/py-spy"), Path("/run/profiles"), (0,))
    assert place == SamplerPlace(("/venv/bin/py-spy",), "/run/profiles", 4321)


def test_a_containers_tree_is_sampled_from_inside_its_pid_namespace_on_the_generators_cpus(tmp_path: Path) -> None:
    tree = ContainerTree(os.getpid(), "servebench-fastapi-iris-abc123", "servebench/fastapi:0123",
                         {"servebench.owner": "42"})
    place = tree.sampler_place(tmp_path / "py-spy", tmp_path / "profiles", (0, 2))
    command = list(place.command)
    assert command[:3] == ["docker", "run", "--rm"]
    pairs = set(pairwise(command))
    assert ("--pid", "container:servebench-fastapi-iris-abc123") in pairs  # the server's pid namespace
    assert ("--cap-add", "SYS_PTRACE") in pairs and ("--user", "0") in pairs
    assert "--no-healthcheck" in command  # the image's health check would run on the generator's CPUs
    assert ("--cpuset-cpus", "0,2") in pairs  # the generator's CPUs, never the server's
    assert ("--label", "servebench.owner=42") in pairs  # reaped with the harness's other containers
    assert ("-v", f"{tmp_path / 'py-spy'}:{TOOL}:ro") in pairs and ("-v", f"{tmp_path / 'profiles'}:{FOLDER}") in pairs
    assert command[-3:] == ["--entrypoint", TOOL, "servebench/fastapi:0123"]  # the server's own image, unchanged
    assert place.folder == FOLDER and place.pid == os.getpid()  # this process is in the host's namespace
    assert command[command.index("--name") + 1] in tree.samplers


def test_a_pid_is_read_in_its_own_namespace(tmp_path: Path) -> None:
    assert namespace_pid(os.getpid()) == os.getpid()
    assert namespace_pid(2**22 + 17) == 2**22 + 17  # no such process: the pid as given


def test_a_load_that_stops_before_the_window_kills_the_waiting_shell_and_says_why(recording: Recording) -> None:
    """The shell that sleeps until the window would ignore a SIGINT (inherited ignored, as in CI) and start
    py-spy anyway, to sample an idle server until its --duration."""
    with sigint_ignored():
        recording.schedule(time.time() + 30, 30)
    time.sleep(0.3)
    started = time.monotonic()
    recording.interrupt()
    recording.stop()
    assert time.monotonic() - started < 1.0
    assert recording._process is not None and recording._process.poll() is not None
    profile = recording.profile(Classifier.for_runtime(()), "fake")
    assert profile.shares is None and profile.error is not None and "before the measured window" in profile.error


def test_a_load_that_stops_inside_the_window_stops_the_profiler_even_with_sigint_ignored(
        recording: Recording) -> None:
    """A harness started in the background by a non-interactive shell ignores SIGINT, and its children inherit
    that; the profiler still stops at the first SIGINT that reaches it, and keeps what it sampled."""
    with sigint_ignored():
        recording.schedule(time.time() + 0.5, 30)
    time.sleep(2.5)
    started = time.monotonic()
    recording.interrupt()
    recording.stop()
    assert time.monotonic() - started < 2.0
    profile = recording.profile(Classifier.for_runtime(()), "fake")
    assert profile.error is None and profile.samples == 2  # ~2 s sampled, not 30


def test_a_window_that_ends_on_time_is_not_cut_short(recording: Recording) -> None:
    recording.schedule(time.time() + 0.2, 1)
    recording.stop()
    assert recording.profile(Classifier.for_runtime(()), "fake").samples == 1


def test_docker_profiles_before_schema_9_counted_waits_and_the_report_says_so(tmp_path: Path) -> None:
    from bench.report.time_spent import _note
    from bench.results.store import load_results

    payload = json.loads((RUNS / "fake-v7" / "results.json").read_text())
    profile = {"rate_hz": 100, "samples": 3714, "processes": 1,
               "shares": {"model": 0.02, "serialisation": 0.01, "http": 0.96, "framework": 0.0, "other": 0.01,
                          "unclassified": 0.0}}
    first, second = payload["cells"][:2]
    payload["cells"][:2] = [{**first, "target": "docker", "server_profile": profile},
                            {**second, "target": "local", "server_profile": profile}]
    payload["schema_version"] = 8
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(payload))
    docker_cell, local_cell = load_results(tmp_path / "run").cells[:2]
    assert docker_cell.server_profile is not None and docker_cell.server_profile.waits_counted
    assert local_cell.server_profile is not None and not local_cell.server_profile.waits_counted
    assert "waits count" in _note(docker_cell) and "waits count" not in _note(local_cell)
    sampled_inside = docker_cell.model_copy(update={
        "server_profile": docker_cell.server_profile.model_copy(update={"waits_counted": False})})
    assert "waits count" not in _note(sampled_inside)
