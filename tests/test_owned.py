"""The one registry of what this harness started (bench.targets.owned), the names that lead to it, and the
Docker target's reaping of containers whose owner was killed outright (a faked docker: no daemon)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.cli import doctor as doctor_cli
from bench.cli import main
from bench.targets import docker as docker_target
from bench.targets import owned
from bench.targets.kserve.runner import Background
from bench.targets.owned import OWNED, OwnedResources


class Thing:
    def __init__(self, log: list[str], name: str, fails: bool = False) -> None:
        self.log, self.name, self.fails = log, name, fails

    def stop(self) -> None:
        self.log.append(self.name)
        if self.fails:
            raise RuntimeError(f"{self.name} would not stop")


def test_everything_live_is_stopped_newest_first_and_counted() -> None:
    registry, log = OwnedResources(), []
    first, second, gone = Thing(log, "deployment"), Thing(log, "port-forward"), Thing(log, "stopped already")
    for thing in (first, gone, second):
        registry.add(thing)
    registry.discard(gone)
    assert registry.stop_all() == 2
    assert log == ["port-forward", "deployment"] and registry.live() == []
    assert registry.stop_all() == 0


def test_one_resource_failing_to_stop_does_not_keep_the_others_running() -> None:
    registry, log = OwnedResources(), []
    registry.add(Thing(log, "a"))
    registry.add(Thing(log, "b", fails=True))
    registry.add(Thing(log, "c"))
    with pytest.raises(RuntimeError, match="b would not stop"):
        registry.stop_all()
    assert log == ["c", "b", "a"] and registry.live() == []


def test_ctrl_c_in_any_command_stops_what_the_registry_holds(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's interrupt path stops every owned resource, whichever target made it, and says how many."""
    log: list[str] = []
    monkeypatch.setattr(owned, "OWNED", OwnedResources())

    def interrupted(_args: object) -> int:
        owned.OWNED.add(Thing(log, "container"))
        owned.OWNED.add(Thing(log, "port-forward"))
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor_cli, "cmd_doctor", interrupted)
    assert main(["doctor"]) == 130
    assert log == ["port-forward", "container"] and owned.OWNED.live() == []
    assert "stopped 2 server(s), container(s) and port-forward(s)" in capsys.readouterr().err


def test_the_registry_is_stopped_at_exit_in_a_fresh_interpreter(tmp_path: Path) -> None:
    script = ("from bench.targets.owned import OWNED\n"
              "class T:\n    def stop(self): print('stopped at exit', flush=True)\n"
              "OWNED.add(T())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "stopped at exit\n"  # atexit is registered once, at import of bench.targets.owned


def test_a_port_forward_is_owned_until_stopped() -> None:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    forward = Background(process)
    assert forward in OWNED.live()
    forward.stop()
    assert forward not in OWNED.live() and process.poll() is not None
    assert Background(None) not in OWNED.live()  # a dry run's port-forward has nothing to stop


# ---- Docker: containers of a dead harness are reaped by the next run ---------------------------------


def test_only_containers_of_owners_that_no_longer_run_here_are_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    me = docker_target.owner_labels()
    dead = subprocess.Popen(["true"])
    dead.wait()
    reused = psutil.Process(os.getppid())  # runs, but started at another time than the label says
    host = me[docker_target.OWNER_HOST_LABEL]
    listed = "\n".join([
        f"mine\t{me[docker_target.OWNER_LABEL]}\t{me[docker_target.OWNER_STARTED_LABEL]}\t{host}",
        f"dead\t{dead.pid}\t123.00\t{host}",
        f"pid-reused\t{reused.pid}\t123.00\t{host}",
        f"other-host\t{dead.pid}\t123.00\telsewhere",
        f"old-labels\t{dead.pid}\t\t",
    ])
    calls: list[tuple[str, ...]] = []

    def fake_docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, listed if args[0] == "ps" else "", "")

    monkeypatch.setattr(docker_target, "docker", fake_docker)
    removed = docker_target.reap_orphans()
    assert [line.split()[1] for line in removed] == ["dead", "pid-reused"]
    assert f"pid {dead.pid}, no longer runs" in removed[0]
    assert [call for call in calls if call[0] == "rm"] == [("rm", "-f", "dead"), ("rm", "-f", "pid-reused")]
    assert calls[0][:4] == ("ps", "-a", "--filter", "label=servebench.owner")
