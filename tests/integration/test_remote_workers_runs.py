"""Remote load generators with real processes: `bench run --expect-workers N` and N `bench worker` processes,
on loopback and in network namespaces of their own (a bridge 10.213.X.1/24 and one veth per worker, made and
removed here), so that the workers share nothing with the run but the network. Every process and namespace
is checked gone afterwards, on failure too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests

from bench.load.remote_protocol import sample_byte_cap
from bench.load.worker_auth import TOKEN_ENV, new_token
from bench.models.registry import LocalModel
from bench.ports import free_port
from bench.results.store import load_results

FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
pytestmark = pytest.mark.integration


def scenario(folder: Path, **load: object) -> Path:
    """200 req/s Poisson (or the load given), 1 s warm-up and 4 s measured under the smoke profile."""
    path = folder / "remote.yaml"
    path.write_text(json.dumps({"name": "remote", "loop": "open", "arrival": "poisson", **(load or {"rate": 200}),
                                "warmup_s": 5, "duration_s": 20, "slo": {"percentile": "p99", "ms": 500},
                                "min_requests": 100}))
    return path


@dataclass
class Processes:
    """Everything a test started, stopped (and checked stopped) whatever happens."""

    port: int
    started: list[subprocess.Popen[str]] = field(default_factory=list)
    token: str = field(default_factory=new_token)  # the run's and its workers' (a rogue's is another)

    def start(self, argv: list[str], home: Path, prefix: tuple[str, ...] = (),
              token: str | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen([*prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True, env={**os.environ, "SERVEBENCH_HOME": str(home),
                                                                "COLUMNS": "200", TOKEN_ENV: token or self.token})
        self.started.append(process)
        return process

    def strays(self) -> list[psutil.Process]:
        """Locust masters and workers of this test's port still running (they live in sessions of their own)."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if "locust" in line and str(self.port) in line:
                found.append(process)
        return found

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for stray in self.strays():
            stray.kill()


@pytest.fixture
def procs() -> Iterator[Processes]:
    tracked = Processes(free_port())
    try:
        yield tracked
    finally:
        leftover = [process for process in tracked.started if process.poll() is None]
        strays = tracked.strays()
        tracked.stop_all()
        assert not leftover and not strays, f"left running: {leftover} {strays}"


def worker(procs: Processes, home: Path, master: str, *extra: str,
           prefix: tuple[str, ...] = (), token: str | None = None) -> subprocess.Popen[str]:
    return procs.start([*BENCH, "worker", "--master", master, "--idle-timeout", "30", *extra], home, prefix, token)


def run_args(tmp_path: Path, out: str, *extra: str) -> list[str]:
    path = tmp_path / "remote.yaml"
    return [*BENCH, "run", "--model", "iris-logreg", "--scenario", str(path if path.exists() else scenario(tmp_path)),
            "--length", "smoke",
            "--no-mlflow", "--out", str(tmp_path / out), *extra]


def finish(process: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_two_worker_processes_serve_a_run_and_a_worker_killed_mid_cell_invalidates_only_that_cell(
        tmp_path: Path, procs: Processes, models: dict[str, LocalModel]) -> None:
    """Two cells: both workers serve the first (one merged, valid cell); one worker's generator is killed in
    the second, which ends without waiting for it and is invalid with the reason."""
    master = f"127.0.0.1:{procs.port}"
    workers = [worker(procs, tmp_path / f"w{k}", master, "--cells", "2") for k in range(2)]
    scenario(tmp_path, sweep=[200, 150])
    run = procs.start(run_args(tmp_path, "run", "--runtime", str(FAKE_RUNTIME), "--expect-workers", "2",
                               "--master-bind", master), tmp_path / "home")
    victim = None
    deadline = time.monotonic() + 80
    while victim is None:  # the second cell's first samples: kill one worker's Locust process
        assert time.monotonic() < deadline and run.poll() is None, "the second cell never started"
        if list((tmp_path / "run" / "load").glob("002-*/samples-1-remote.csv")):
            victim = next(child for child in psutil.Process(workers[1].pid).children(recursive=True)
                          if "locust" in " ".join(child.cmdline()))
            victim.kill()
        time.sleep(0.2)
    code, output = finish(run)
    assert code == 0, output[-3000:]
    first, second = load_results(tmp_path / "run").cells
    assert first.validity.valid, first.validity.reasons
    assert first.generator is not None and [w.index for w in first.generator.workers] == [0, 1]
    assert all(w.finished and w.samples > 0 and w.clock_rtt_ms is not None for w in first.generator.workers)
    assert first.counts.scheduled == first.counts.sent + (first.counts.dropped or 0) > 500
    assert first.load.generator_processes == 2
    assert not second.validity.valid and any("left before it reported" in reason
                                             for reason in second.validity.reasons), second.validity
    code, said = finish(workers[0], 30)
    assert code == 0 and "served 2 cell(s)" in said, said
    os.killpg(workers[1].pid, signal.SIGINT)
    code, said = finish(workers[1], 10)
    assert code == 130 and "a cell ended without a report" in said, said  # then waited for a next cell


def test_ctrl_c_on_the_master_stops_its_workers_and_a_missing_worker_fails_the_cell_in_bounded_time(
        tmp_path: Path, procs: Processes, models: dict[str, LocalModel]) -> None:
    master = f"127.0.0.1:{procs.port}"
    # one worker of two: the cell fails within --worker-wait, with the reason, and the run goes on
    lonely = worker(procs, tmp_path / "w0", master)
    started = time.monotonic()
    run = procs.start(run_args(tmp_path, "missing", "--runtime", str(FAKE_RUNTIME), "--expect-workers", "2",
                               "--master-bind", master, "--worker-wait", "8"), tmp_path / "home")
    code, output = finish(run)
    assert code == 1 and time.monotonic() - started < 45, output[-3000:]
    (cell,) = load_results(tmp_path / "missing").cells
    assert cell.status == "failed" and "1 of 2 worker(s) joined" in (cell.validity.error or ""), cell.validity
    os.killpg(lonely.pid, signal.SIGINT)  # Ctrl-C on a worker waiting for the next cell: it stops at once
    code, said = finish(lonely, 10)
    assert code == 130 and "the master gave up on the cell before its start" in said, said
    # Ctrl-C on the master during the measurement: the run exits 130 and its workers stop too
    workers = [worker(procs, tmp_path / f"w{k}", master) for k in range(2)]
    run = procs.start(run_args(tmp_path, "interrupted", "--runtime", str(FAKE_RUNTIME), "--expect-workers", "2",
                               "--master-bind", master), tmp_path / "home")
    deadline = time.monotonic() + 60
    while not list((tmp_path / "interrupted" / "load").glob("*/samples-*-remote.csv")):
        assert time.monotonic() < deadline and run.poll() is None, "no samples arrived"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGINT)
    code, output = finish(run, 30)
    assert code == 130, output[-3000:]
    for process in workers:
        code, said = finish(process, 20)
        assert code == 0 and "the master stopped this worker" in said, said


def test_a_worker_without_the_runs_token_is_refused_and_named(
        tmp_path: Path, procs: Processes, models: dict[str, LocalModel]) -> None:
    """A worker holding another token gets nothing (no plan, no rows, no headers) and is named in the cell; the
    run's own worker serves it."""
    master = f"127.0.0.1:{procs.port}"
    rogue = worker(procs, tmp_path / "rogue", master, "--cells", "1", token=new_token())
    time.sleep(3)  # the rogue is waiting for the master when it opens, so it asks in first
    good = worker(procs, tmp_path / "good", master, "--cells", "1")
    scenario(tmp_path, rate=100)
    run = procs.start(run_args(tmp_path, "run", "--runtime", str(FAKE_RUNTIME), "--expect-workers", "1",
                               "--master-bind", master), tmp_path / "home")
    code, output = finish(run)
    assert code == 0, output[-3000:]
    (cell,) = load_results(tmp_path / "run").cells
    assert cell.validity.valid, cell.validity.reasons
    refused = [warning for warning in cell.validity.warnings if "did not hold the run's worker token" in warning]
    assert refused and socket.gethostname() in refused[0], cell.validity.warnings
    code, said = finish(rogue, 30)
    assert code == 2 and "run's token" in said, said  # neither side can prove a token the other lacks
    code, said = finish(good, 30)
    assert code == 0 and "served 1 cell(s)" in said, said


def test_a_worker_sending_more_than_its_share_is_cut_off_and_the_cell_fails(
        tmp_path: Path, procs: Processes, models: dict[str, LocalModel]) -> None:
    """A worker with the token that floods the master with samples (200,000 rows, about 12 MB, where its share
    is 250) is cut off: the master's sample file stays within the cap and the cell fails with the reason."""
    master = f"127.0.0.1:{procs.port}"
    scenario(tmp_path, rate=50)  # 5 s (smoke) x 50 req/s: a share of 250 rows
    run = procs.start(run_args(tmp_path, "run", "--runtime", str(FAKE_RUNTIME), "--expect-workers", "1",
                               "--master-bind", master, "--worker-wait", "30"), tmp_path / "home")
    rogue_script = Path(__file__).resolve().parents[1] / "rogue_worker.py"
    deadline = time.monotonic() + 60
    while not list((tmp_path / "run" / "load").glob("*/distributed.json")):
        assert time.monotonic() < deadline and run.poll() is None, "the master never listened"
        time.sleep(0.2)
    rogue = procs.start([sys.executable, str(rogue_script), "127.0.0.1", str(procs.port), "200000"], tmp_path / "r")
    code, output = finish(run)
    assert code == 1, output[-3000:]
    (cell,) = load_results(tmp_path / "run").cells
    assert "sent more samples than its share" in (cell.validity.error or ""), cell.validity
    written = sum(path.stat().st_size for path in (tmp_path / "run" / "load").glob("*/samples-*-remote.csv"))
    assert written <= sample_byte_cap("open", [(5.0, 50.0)], 5.0, 1) < 1_000_000
    rogue.wait(timeout=30)


# ---- network namespaces ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    bridge: str
    master_ip: str
    namespaces: tuple[str, ...]
    addresses: tuple[str, ...]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def net() -> Iterator[Net]:
    """A bridge with this host at 10.213.X.1 and two namespaces at .2 and .3, each behind its own veth."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = os.getpid() % 10_000
    octet = 1 + os.getpid() % 250
    bridge = f"sb{tag}br"
    spaces = tuple(f"sb{tag}w{k}" for k in range(2))
    addresses = tuple(f"10.213.{octet}.{k + 2}" for k in range(2))
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"10.213.{octet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for k, (space, address) in enumerate(zip(spaces, addresses, strict=True)):
            _ip("netns", "add", space)
            _ip("link", "add", f"sb{tag}v{k}", "type", "veth", "peer", "name", f"sb{tag}p{k}")
            _ip("link", "set", f"sb{tag}p{k}", "netns", space)
            _ip("link", "set", f"sb{tag}v{k}", "master", bridge, "up")
            _ip("-n", space, "addr", "add", f"{address}/24", "dev", f"sb{tag}p{k}")
            _ip("-n", space, "link", "set", f"sb{tag}p{k}", "up")
            _ip("-n", space, "link", "set", "lo", "up")
        yield Net(bridge, f"10.213.{octet}.1", spaces, addresses)
    finally:
        for space in spaces:
            pids = subprocess.run(["ip", "netns", "pids", space], capture_output=True, text=True).stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", space], capture_output=True)
        for k in range(2):
            subprocess.run(["ip", "link", "del", f"sb{tag}v{k}"], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(space in listed for space in spaces), listed


def test_workers_in_their_own_network_namespaces_match_one_local_generator(
        tmp_path: Path, procs: Processes, net: Net, models: dict[str, LocalModel]) -> None:
    server_port = free_port()
    server = procs.start([*BENCH, "serve", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg",
                          "--host", net.master_ip, "--port", str(server_port)], tmp_path / "home")
    base = f"http://{net.master_ip}:{server_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, "bench serve did not come up"
        time.sleep(0.2)
    url = ["--target", "url", "--url", f"{base}/predict", "--protocol", "kserve-v1", "--name", "served"]
    master = f"{net.master_ip}:{procs.port}"
    workers = [worker(procs, tmp_path / f"w{k}", master, "--cells", "1", prefix=("ip", "netns", "exec", space))
               for k, space in enumerate(net.namespaces)]
    remote = procs.start(run_args(tmp_path, "remote", *url, "--expect-workers", "2", "--master-bind", master),
                         tmp_path / "home")
    # one local generator over the same scenario, at the same time (a light load: the counts depend on the
    # seeded schedule and the window alone, and CI time is short)
    local = procs.start(run_args(tmp_path, "local", *url), tmp_path / "home")
    for run in (remote, local):
        code, output = finish(run)
        assert code == 0, output[-3000:]
    for process in workers:
        code, said = finish(process, 30)
        assert code == 0 and "served 1 cell(s)" in said, said
    os.killpg(server.pid, signal.SIGINT)
    server.wait(timeout=30)

    (one,) = load_results(tmp_path / "local").cells
    (merged,) = load_results(tmp_path / "remote").cells
    assert one.validity.valid and merged.validity.valid, (one.validity, merged.validity)
    assert merged.generator is not None
    assert sorted(w.address for w in merged.generator.workers) == sorted(net.addresses)
    assert all(abs(w.clock_offset_ms or 0.0) < 5 and w.finished for w in merged.generator.workers)
    # the same seeded schedule, the same window: the same scheduled count, every slot sent or dropped
    assert merged.counts.scheduled == one.counts.scheduled
    for cell in (one, merged):
        assert cell.counts.scheduled == cell.counts.sent + (cell.counts.dropped or 0)
    samples = pd.read_parquet(tmp_path / "remote" / str(merged.samples_file))
    assert set(samples["worker"]) == {0, 1}
    per_worker = samples.groupby("worker").size()
    assert {int(w.index): w.samples for w in merged.generator.workers} == per_worker.to_dict()
