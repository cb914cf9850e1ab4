"""py-spy recording a server's whole process tree (`--subprocesses`) over the measured window only, and the
profile it gives: collapsed stacks and a flame graph in the run folder, the shares in the cell.

py-spy runs on the generator's CPUs (never the server's, whose CPU the cell measures) with --nonblocking,
so the server is never paused to be read: the cost to the server is its memory being read 100 times a
second, measured by scripts/sampling_overhead.py (docs/guide.md). Idle threads are left out (py-spy's default), so
the shares are of the time the server's threads were running or waiting for a CPU.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.process_tree import ProcessTree
from bench.processes import inherited_environment, pin_and_tie_to_parent
from bench.provision.containers import DOCKER_PREFIXES
from bench.results.profiles import ServerProfile
from bench.server_time.flamegraph import render_svg
from bench.server_time.rules import Classifier
from bench.server_time.stacks import read_collapsed

RATE_HZ = 100  # py-spy's default: 1 sample per 10 ms per thread
PROFILES = "profiles"  # the run folder's subfolder
INTERRUPTED_GRACE_S = 1.0  # after interrupt(): py-spy writes its file within milliseconds of a SIGINT
CUT_SHORT_S = 5.0


def py_spy() -> str:
    """The py-spy executable: beside the harness's Python, else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise BenchError("--sample-server needs py-spy, which is not installed",
                         hint="pip install py-spy (a dependency of servebench: reinstall it)")
    return found


@dataclass
class ProfileSettings:
    """What a run profiles with: the rate, the CPUs py-spy may use and the run folder."""

    out_dir: Path
    cpus: tuple[int, ...]
    rate_hz: int = RATE_HZ
    blocking: bool = False  # pause the server at each sample: py-spy then asks the OS which threads are idle


@dataclass
class Recording:
    """One cell's profile: py-spy started at the window's start, stopped at its end (or when the load ends)."""

    settings: ProfileSettings
    tree: ProcessTree  # the server's processes, and where py-spy must run to see them as they see themselves
    name: str
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _error: str | None = field(default=None, init=False)
    _start_at: float = field(default=0.0, init=False)
    _interrupted: bool = field(default=False, init=False)

    @property
    def raw_path(self) -> Path:
        return self.settings.out_dir / PROFILES / f"{self.name}.txt"

    @property
    def log_path(self) -> Path:
        return self.settings.out_dir / PROFILES / f"{self.name}.log"

    @property
    def svg_path(self) -> Path:
        return self.settings.out_dir / PROFILES / f"{self.name}.svg"

    def schedule(self, start_at: float, duration_s: float) -> None:
        """Start py-spy at start_at (wall clock) for duration_s seconds. It is started now, from this thread,
        behind a shell's sleep that execs it (the same process): a child started from a timer thread would be
        killed when that thread ends (PR_SET_PDEATHSIG follows the creating thread). Where it runs (here, or in a
        container that shares the server container's pid namespace) is the tree's to say."""
        self.raw_path.parent.mkdir(parents=True, exist_ok=True)
        self._start_at = start_at
        delay = max(0.0, start_at - time.time())
        try:
            executable = py_spy()
        except BenchError as exc:
            self._error = exc.message
            return
        place = self.tree.sampler_place(Path(executable), self.raw_path.parent, self.settings.cpus)
        command = ["sh", "-c", 'sleep "$0" && exec "$@"', f"{delay:.3f}", *place.command, "record",
                   "--pid", str(place.pid), "--subprocesses", "--format", "raw", "--nolineno",
                   *([] if self.settings.blocking else ["--nonblocking"]), "--rate", str(self.settings.rate_hz),
                   "--duration", str(math.ceil(duration_s)),
                   "--output", f"{place.folder}/{self.raw_path.name}"]
        with self.log_path.open("wb") as log:
            try:
                self._process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=inherited_environment(DOCKER_PREFIXES),  # py-spy, or docker run of it
                    preexec_fn=lambda: pin_and_tie_to_parent(self.settings.cpus))
            except OSError as exc:
                self._error = f"py-spy did not start: {exc}"

    def stop(self, grace_s: float = 10.0) -> None:
        """After the load: let py-spy finish its window (grace_s more at most; none once interrupted), then cut it
        short with SIGINT, which makes it write what it sampled."""
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=INTERRUPTED_GRACE_S if self._interrupted else grace_s)
        except subprocess.TimeoutExpired:
            self._cut_short(process)

    def interrupt(self) -> None:
        """The load ended before the window did: stop sampling now, keeping what was sampled. Before the window's
        start py-spy is not running yet (its shell sleeps): the shell is killed, there is nothing to keep."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._interrupted = True
        if time.time() < self._start_at:
            process.kill()
            self._error = "the load stopped before the measured window began: nothing was sampled"
        else:
            process.send_signal(signal.SIGINT)

    @staticmethod
    def _cut_short(process: subprocess.Popen[bytes]) -> None:
        """SIGINT until py-spy stops, for CUT_SHORT_S at most: the first may reach the shell that has not yet
        exec'd py-spy (a shell started with SIGINT ignored, as from a non-interactive one, keeps ignoring it),
        or a `docker run` whose container is not started yet (nothing to forward to); then SIGKILL."""
        deadline = time.monotonic() + CUT_SHORT_S
        while time.monotonic() < deadline:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=0.5)
                return
            except subprocess.TimeoutExpired:
                continue
        process.kill()
        process.wait()

    def profile(self, classifier: Classifier, title: str) -> ServerProfile:
        """The cell's profile from what py-spy wrote: shares, samples, the flame graph (or why there is none)."""
        stacks = read_collapsed(self.raw_path)
        relative = f"{PROFILES}/{self.name}"
        if not stacks:
            log = self.log_path
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            why = self._error or (f"py-spy recorded no samples: {tail[0]}" if tail else "py-spy recorded no samples")
            return ServerProfile(rate_hz=self.settings.rate_hz, error=why)
        self.svg_path.write_text(render_svg(stacks, classifier, title))
        processes = {frame.function for stack in stacks for frame in stack.frames if frame.is_process}
        return ServerProfile(rate_hz=self.settings.rate_hz, samples=sum(s.count for s in stacks),
                             processes=len(processes), shares=classifier.shares(stacks),
                             flamegraph=f"{relative}.svg", stacks=f"{relative}.txt")
