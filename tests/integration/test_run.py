"""`bench run` for real: Locust load against real servers, a server killed mid-run, and Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from terminal import as_from_a_terminal

from bench.config import available_runtimes, load_run_length, load_runtime, load_scenario
from bench.events import EventHook, Message
from bench.measure.run import RunEvent, RunOptions, run_benchmark
from bench.models.catalog import get_spec
from bench.models.registry import LocalModel
from bench.results.schema import SCHEMA_VERSION
from bench.results.store import load_results
from bench.targets.launch import default_cpu_plan
from bench.targets.local import LocalTarget

pytestmark = pytest.mark.integration

BENCH = [sys.executable, "-m", "bench.cli"]
FAKE_RUNTIME = Path(__file__).parents[1] / "data" / "fake-runtime"
BRIEF = Path(__file__).parents[1] / "data" / "brief.yaml"  # every runtime: 4 s measured each
PERCENTILE_ORDER = ["p50", "p90", "p95", "p99", "p999", "max"]


def write_scenario(folder: Path, **overrides: Any) -> Path:
    scenario = {"name": "test-sweep", "loop": "open", "arrival": "constant", "sweep": [100, 100],
                "warmup_s": 1, "duration_s": 4, "slo": {"percentile": "p99", "ms": 100}, "min_requests": 50,
                "request_timeout_s": 2, **overrides}
    path = folder / "scenario.yaml"
    path.write_text(json.dumps(scenario))  # JSON is YAML
    return path


def my_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def test_smoke_run_of_all_runtimes(tmp_path: Path, models: dict[str, LocalModel], runtime_envs: None) -> None:
    out = tmp_path / "run"
    result = subprocess.run([*BENCH, "run", "--runtime", "all", "--model", "iris-logreg", "--scenario", str(BRIEF),
                             "--length", "smoke", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(out)
    assert results.status == "complete" and results.schema_version == SCHEMA_VERSION
    assert {c.runtime for c in results.cells} == set(available_runtimes())
    for cell in results.cells:
        assert cell.validity.valid, (cell.runtime, cell.validity.reasons)
        assert cell.parity.ok and cell.counts.errors == 0
        latency = [getattr(cell.latency, key) for key in PERCENTILE_ORDER]
        assert latency == sorted(latency) and latency[0] > 0
        offered = load_scenario(str(BRIEF)).rate
        assert cell.load.offered_rps == offered and abs((cell.rates.achieved_rps or 0) - offered) < 0.05 * offered
        assert (cell.server.startup_s or 0) > 0 and (cell.server.rss_mb_max or 0) > 50
        assert cell.samples_file is not None
        samples = pd.read_parquet(out / cell.samples_file)
        assert int(samples["in_window"].sum()) == cell.counts.requests
        assert (samples["latency_ms"] >= samples["service_ms"] - 1e-3).all()
        assert set(samples["status"]) == {200}
        if load_runtime(cell.runtime).metrics is None:
            assert cell.server_metrics is None
            continue
        # the server's own clock: it counted the window's requests (give or take the edges: it counts what it
        # answered between two readings a second apart) and took no longer than the client saw
        metrics = cell.server_metrics
        assert metrics is not None and metrics.error is None, (cell.runtime, metrics)
        assert abs((metrics.requests or 0) - cell.counts.completed) <= 0.15 * cell.counts.completed, metrics
        assert metrics.mean_ms is not None and 0 < metrics.mean_ms < (cell.latency_ok.mean or 0), metrics
    assert (out / "run.log").is_file() and len(list((out / "servers").glob("*.log"))) == len(available_runtimes())


def test_server_killed_mid_run_yields_error_cells_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict[str, LocalModel]) -> None:
    # 2 parity requests, 1 s warm-up: dies 1 s into the window
    monkeypatch.setenv("SERVEBENCH_TEST_FAKE_MODE", "die_after:200")
    before = my_processes()
    cpus = default_cpu_plan()
    options = RunOptions(
        runtimes=[load_runtime(str(FAKE_RUNTIME)), load_runtime("fastapi")], models=[get_spec("iris-logreg")],
        scenario=load_scenario(str(write_scenario(tmp_path))), profile=load_run_length("smoke"),
        target=LocalTarget(cpus), out_dir=tmp_path / "run", run_id="test", generator_cpus=cpus.generator)
    store = run_benchmark(options)
    cells = store.results.cells
    assert store.results.status == "complete" and len(cells) == 4
    died, after, *fastapi = cells
    assert died.runtime == "fake" and not died.validity.valid
    assert "server exited during the measurement" in died.validity.reasons
    assert died.counts.requests > 0 and died.counts.errors > 0  # what was measured before the crash is kept
    assert died.latency.p50 is not None and died.rates.throughput_rps > 0
    assert after.validity.error == "server had exited before this measurement" and not after.validity.valid
    assert all(cell.validity.valid for cell in fastapi), [cell.validity.reasons for cell in fastapi]
    assert load_results(tmp_path / "run").cells == cells
    assert my_processes() <= before


def test_an_unexpected_error_saves_what_was_measured_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict[str, LocalModel]) -> None:
    """A bug or a full disk after the first cell: the run ends `failed` with that cell on disk, the traceback
    goes to the run's messages (run.log), and no server is left running."""
    def disk_gone(_folder: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bench.measure.run._drop_raw_csv", disk_gone)
    before = my_processes()
    cpus = default_cpu_plan()
    options = RunOptions(
        runtimes=[load_runtime(str(FAKE_RUNTIME))], models=[get_spec("iris-logreg")],
        scenario=load_scenario(str(write_scenario(tmp_path))), profile=load_run_length("smoke"),
        target=LocalTarget(cpus), out_dir=tmp_path / "run", run_id="test", generator_cpus=cpus.generator)
    said: list[str] = []
    events = EventHook[RunEvent](lambda event: said.append(event.text) if isinstance(event, Message) else None)
    with pytest.raises(OSError, match="No space left"):
        run_benchmark(options, events)
    results = load_results(tmp_path / "run")
    assert results.status == "failed" and len(results.cells) == 1 and results.cells[0].validity.valid
    assert any("unexpected error" in text and "OSError: [Errno 28] No space left" in text for text in said), said
    assert my_processes() <= before


@pytest.mark.parametrize(("signum", "processes"), [(signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGHUP, 1)],
                         ids=["INT", "TERM-2-generator-processes", "HUP"])
def test_ctrl_c_keeps_finished_cells_and_stops_everything(tmp_path: Path, models: dict[str, LocalModel],
                                                          signum: int, processes: int) -> None:
    """Ctrl-C, a CI runner's SIGTERM and a dropped session's SIGHUP alike: the run ends within 3 seconds
    (measured 0.4-1.9 s in a terminal), with one generator process or a Locust master and its workers."""
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, duration_s=8, generator_processes=processes)
    run = subprocess.Popen([*BENCH, "run", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--scenario",
                            str(scenario), "--length", "quick", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "COLUMNS": "200"}, preexec_fn=as_from_a_terminal)
    try:
        assert run.stderr is not None
        for line in run.stderr:  # the first cell has finished: interrupt the second one mid-load
            if line.startswith("[1/2]"):
                break
        time.sleep(7)  # past the startup grace (4 s with two processes) and the 1 s warm-up: mid-window
        descendants = psutil.Process(run.pid).children(recursive=True)
        assert len(descendants) >= 2  # the server and the load generator
        interrupted = time.monotonic()
        run.send_signal(signum)
        assert run.wait(timeout=60) == 130
        assert time.monotonic() - interrupted < 3.0
    finally:
        run.kill()
    results = load_results(out)
    assert results.status == "interrupted"
    first, second = results.cells
    assert first.validity.valid
    assert not second.validity.valid and any("interrupted" in reason for reason in second.validity.reasons)
    assert second.counts.requests > 0 and (out / str(second.samples_file)).is_file()
    _, alive = psutil.wait_procs([p for p in descendants if p.is_running()], timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "processes outlived Ctrl-C"


def test_two_generator_processes_listen_on_loopback_only(tmp_path: Path, models: dict[str, LocalModel]) -> None:
    """Locust's master binds every interface on port 5557 by default: any host could join a cell and take a
    share of its schedule, and two runs at once would collide. With two processes, what the generator
    listens on (as `ss -ltnp` shows it) is loopback only, on a port of its own."""
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, sweep=[100], duration_s=6, generator_processes=2)
    run = subprocess.Popen([*BENCH, "run", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--scenario",
                            str(scenario), "--length", "quick", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listening: set[tuple[str, int]] = set()
    try:
        deadline = time.monotonic() + 120
        while run.poll() is None and time.monotonic() < deadline:
            generators = [p for p in psutil.Process(run.pid).children(recursive=True)
                          if "locust" in " ".join(_cmdline(p))]
            for process in generators:
                with contextlib.suppress(psutil.Error):
                    listening |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections("tcp")
                                  if c.status == psutil.CONN_LISTEN}
            time.sleep(0.5)
        assert run.wait(timeout=60) == 0
    finally:
        run.kill()
    assert listening, "the two-process generator's master was never seen listening"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert 5557 not in {port for _, port in listening}


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_a_full_disk_ends_the_run_failed_with_its_cause(tmp_path: Path, models: dict[str, LocalModel]) -> None:
    """The run folder on a 16 MB tmpfs, filled up once the run has begun: the next write fails, and the run
    still ends `failed` (the space held in reserve makes room for that), saying what ran out."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (CI runs as root)")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True)
    try:
        out = small / "run"
        scenario = write_scenario(tmp_path, sweep=[100], duration_s=4)
        run = subprocess.Popen([*BENCH, "run", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--scenario",
                                str(scenario), "--length", "quick", "--no-mlflow", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while not (out / "results.json").exists():
            assert time.monotonic() < deadline and run.poll() is None, "the run never started"
            time.sleep(0.1)
        # every byte left, so the next write fails
        with (small / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(bytes(1 << 16))
        output, _ = run.communicate(timeout=120)
        assert run.returncode != 0, output[-3000:]
        results = load_results(out)
        assert results.status == "failed", output[-3000:]
        assert "No space left on device" in output
        assert not (out / ".space-reserve").exists()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
