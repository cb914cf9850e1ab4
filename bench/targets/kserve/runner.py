"""External commands (kind, kubectl, helm), run for real or only printed.

Cluster set-up and the KServe target speak to the cluster only through a Runner, so `--dry-run` walks the
very same code path and prints every command instead of running it: what the dry run shows is what a
real run would do. Read-only checks ("is the cluster there?") are marked as probes; a dry run prints
them too and answers them as "absent", so the whole sequence is shown.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.targets.owned import OWNED

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 5) -> str:
        return " | ".join((self.stderr or self.stdout).strip().splitlines()[-lines:])


class Background:
    """A long-running command (kubectl port-forward): stopped with its whole process group, and owned
    (bench.targets.owned) from start to stop, so Ctrl-C or exit never leaves one running."""

    def __init__(self, process: subprocess.Popen[bytes] | None) -> None:
        self.process = process
        if process is not None:
            OWNED.add(self)

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self) -> None:
        OWNED.discard(self)
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass
class Runner:
    """Runs commands, or in dry-run mode prints them; every command is kept in `history` in order."""

    dry_run: bool = False
    echo: Echo = print
    history: list[list[str]] = field(default_factory=list)

    def _record(self, command: Sequence[str], probe: bool, background: bool = False) -> None:
        self.history.append(list(command))
        if self.dry_run:
            prefix = "# check: " if probe else ""
            self.echo(prefix + shlex.join(command) + (" &" if background else ""))

    def run(self, *command: str, probe: bool = False, check: bool = True, timeout: float = 900,
            stdin: str | None = None) -> Result:
        """Run a command; a failure raises BenchError unless check=False (probes never raise). stdin is what a
        secret travels in (never recorded, never in argv)."""
        self._record(command, probe)
        if self.dry_run:
            return Result(1 if probe else 0)
        try:
            done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False,
                                  input=stdin)
        except FileNotFoundError:
            raise missing_tool(command[0]) from None
        except subprocess.TimeoutExpired:
            if probe or not check:
                return Result(124, "", f"timed out after {timeout:.0f} s")
            raise BenchError(f"{shlex.join(command[:3])} ... timed out after {timeout:.0f} s") from None
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and not probe and not result.ok:
            raise BenchError(f"{shlex.join(command[:3])} ... failed: {result.tail()}")
        return result

    def spawn(self, *command: str, log_path: Path) -> Background:
        """Start a long-running command in its own process group, output to log_path."""
        self._record(command, probe=False, background=True)
        if self.dry_run:
            return Background(None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            try:
                process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            except FileNotFoundError:
                raise missing_tool(command[0]) from None
        return Background(process)

    def note(self, text: str) -> None:
        """A step the harness does itself (parity, load): shown in a dry run as a comment."""
        if self.dry_run:
            self.echo(f"# {text}")


TOOL_HINTS = {
    "kind": "install kind (see docs/guide.md 'Kubernetes (kind + KServe)' for the pinned version)",
    "kubectl": "install kubectl (see docs/guide.md 'Kubernetes (kind + KServe)' for the pinned version)",
    "helm": "install helm 3 (see docs/guide.md 'Kubernetes (kind + KServe)' for the pinned version)",
    "docker": "install docker.io and start dockerd (see `bench doctor`)",
}


def missing_tool(name: str) -> BenchError:
    return BenchError(f"the {name} command is not installed", hint=TOOL_HINTS.get(name, f"install {name}"))


def require_tools(*names: str) -> None:
    """Fail early, in one line, when a command the cluster needs is not on PATH."""
    for name in names:
        if shutil.which(name) is None:
            raise missing_tool(name)
