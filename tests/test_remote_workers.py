"""Remote load generators, the parts that need no process: the clock offset from ping exchanges, the master
address, the reasons a worker makes a cell invalid, the master's state file, and the CLI's usage errors
(one `error:` line, exit 2, before anything is deployed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bench.cli import main
from bench.load.clock import MAX_CLOCK_ERROR_MS, ClockReading, Exchange, best, clock_reasons
from bench.load.remote_protocol import DistributedState, WorkerReport, split_master
from bench.load.worker_auth import TOKEN_ENV, new_token
from bench.measure.workers import generator_workers, worker_reasons


def test_the_offset_comes_from_the_fastest_exchange_and_corrects_a_skewed_clock() -> None:
    """A worker 2.5 s behind the master: each exchange reads the master's clock halfway through its round
    trip, the queued one is off by half its extra delay, and the fastest one wins."""
    skew = 2.5
    queued = Exchange(sent=100.000, master=100.000 + skew + 0.004, received=100.010)  # answer read late
    fast = Exchange(sent=101.000, master=101.0002 + skew, received=101.0004)
    assert best([queued, fast]) is fast
    reading = ClockReading.of([queued, fast])
    assert reading.offset_ms == pytest.approx(skew * 1000, abs=1e-6)
    assert reading.rtt_ms == pytest.approx(0.4) and reading.error_ms == pytest.approx(0.2)
    local_start = 200.0 - reading.offset_ms / 1000  # the master's start in the worker's clock
    assert local_start == pytest.approx(197.5)


def test_drift_and_a_slow_link_make_the_clock_unsure_beyond_the_stated_skew() -> None:
    start = [Exchange(0.0, 1.0001, 0.0002)]
    end = [Exchange(10.0, 11.0071, 10.0002)]  # the worker's clock lost 7 ms over the cell
    reading = ClockReading.of(start, end)
    assert reading.drift_ms == pytest.approx(7.0) and reading.error_ms > MAX_CLOCK_ERROR_MS
    (reason,) = clock_reasons("gen-a", reading)
    assert "gen-a" in reason and f"{MAX_CLOCK_ERROR_MS:g} ms allowed" in reason
    assert clock_reasons("gen-a", ClockReading(offset_ms=3000.0, rtt_ms=0.5, drift_ms=0.1)) == []
    assert clock_reasons("gen-b", ClockReading(offset_ms=0.0, rtt_ms=12.0)) != []  # +-6 ms at best
    with pytest.raises(ValueError):
        best([])


@pytest.mark.parametrize(("value", "expected"), [("10.0.0.5", ("10.0.0.5", 5557)), ("gen:6000", ("gen", 6000)),
                                                 ("[::1]:5560", ("::1", 5560)), ("::1", ("::1", 5557))])
def test_master_addresses(value: str, expected: tuple[str, int]) -> None:
    assert split_master(value) == expected


@pytest.mark.parametrize("value", ["", ":5557", "host:port", "host:0", "host:70000", "[::1]x"])
def test_malformed_master_addresses(value: str) -> None:
    with pytest.raises(ValueError):
        split_master(value)


def _report(index: int, **changes: object) -> WorkerReport:
    fields: dict[str, object] = {"index": index, "host": "vm", "address": f"10.213.0.{index + 2}", "pid": 100 + index,
                                 "joined_after_s": 0.3, "clock_offset_ms": 0.05, "clock_rtt_ms": 0.2,
                                 "clock_drift_ms": 0.01, "samples": 500, "finished": True}
    fields.update(changes)
    return WorkerReport(**fields)  # type: ignore[arg-type]


def test_worker_reasons() -> None:
    assert worker_reasons((), 2) == []  # a local generator
    assert worker_reasons((_report(0), _report(1)), 2) == []
    reasons = worker_reasons((_report(0, finished=False), _report(1, clock_rtt_ms=40.0)), 3)
    assert len(reasons) == 3
    assert "only 2 of 3" in reasons[0] and "vm (10.213.0.2) left before it reported" in reasons[1]
    assert "vm (10.213.0.3): clock known only within 20.0 ms" in reasons[2]
    (first, second) = generator_workers((_report(0), _report(1)))
    assert (first.index, first.address, second.address, second.samples) == (0, "10.213.0.2", "10.213.0.3", 500)


def test_the_master_state_file_round_trips(tmp_path: Path) -> None:
    state = DistributedState(expected=2, listening_since=1.0, master="127.0.0.1:5557")
    state.write(tmp_path)
    assert DistributedState.read(tmp_path) == state
    later = state.with_worker(_report(1)).with_worker(_report(0)).with_worker(_report(1, samples=7))
    later.write(tmp_path)
    again = DistributedState.read(tmp_path)
    assert again is not None and [worker.index for worker in again.workers] == [0, 1]
    assert again.workers[1].samples == 7
    assert DistributedState.read(tmp_path / "missing") is None


def _in_process(argv: list[str]) -> object:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--expect-workers", "0"], "--expect-workers 0: between 1 and 64"),
    (["run", "--expect-workers", "2", "--generator-processes", "2"], "both say how many generators"),
    (["run", "--expect-workers", "2", "--master-bind", "host:port"], "--master-bind host:port: not ADDR[:PORT]"),
    (["run", "--expect-workers", "2", "--master-bind", "192.0.2.1:5999"], "cannot listen there"),
    (["run", "--expect-workers", "2", "--worker-wait", "0"], "--worker-wait 0: a positive number"),
    (["worker", "--master", "host:80:80"], "--master host:80:80: not HOST[:PORT]"),
    (["worker", "--master", "127.0.0.1", "--idle-timeout", "-1"], "--idle-timeout -1"),
    (["worker", "--master", "127.0.0.1", "--cells", "0"], "--cells 0: at least 1"),
    (["worker", "--master", "127.0.0.1", "--generator-cpus", "4096"], "--generator-cpus 4096: not CPUs"),
    (["worker", "--master", "127.0.0.1", "--generator-cpus", "x"], "--generator-cpus x: not a CPU list"),
    (["run", "--target", "url", "--url", "http://127.0.0.1:9/p", "--protocol", "v2", "--worker-url",
      "http://svc:80"], "--worker-url is where remote workers send the load: it needs --expect-workers N"),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    runtime = [] if "--target" in argv else ["--runtime", "tests/data/fake-runtime"]
    assert _in_process([*argv, *([*runtime, "--no-mlflow"] if argv[0] == "run" else [])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:") and "Traceback" not in err


def test_a_taken_master_port_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = _in_process(["run", "--runtime", "tests/data/fake-runtime", "--no-mlflow", "--expect-workers", "1",
                            "--master-bind", f"127.0.0.1:{port}"])
    assert code == 2 and "cannot listen there" in capsys.readouterr().err


def test_a_worker_with_no_master_gives_up_within_its_idle_timeout(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, new_token())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens once closed
    assert _in_process(["worker", "--master", f"127.0.0.1:{port}", "--idle-timeout", "2"]) == 2
    assert f"no master answered at 127.0.0.1:{port} within 2 s" in capsys.readouterr().err


def test_the_images_worker_entry_takes_the_same_options_and_fails_the_same_way(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m bench.load.worker`, what the worker pods run, is `bench worker` without the harness."""
    from bench.load.worker import main as worker_main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert worker_main(["--master", "127.0.0.1:5557"]) == 2  # no token: no master would accept it
    assert "no worker token" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_ENV, new_token())

    assert worker_main(["--master", "host:80:80"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --master host:80:80: not HOST[:PORT] (hint: for example --master 10.0.0.5:5557)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert worker_main(["--master", f"127.0.0.1:{port}", "--idle-timeout", "1"]) == 2
    assert f"no master answered at 127.0.0.1:{port} within 1 s" in capsys.readouterr().err


def test_a_workers_sample_cap_is_its_share_of_the_schedule_with_a_margin() -> None:
    from bench.load.remote_protocol import MAX_ROW_BYTES, sample_byte_cap

    two = sample_byte_cap("open", [(10.0, 100.0), (10.0, 300.0)], 20.0, 2)  # 4,000 rows, 2,000 each
    assert two == int((2000 * 1.5 + 1000) * MAX_ROW_BYTES)
    assert sample_byte_cap("open", [(10.0, 100.0)], 10.0, 1) < two  # less scheduled, less allowed
    assert sample_byte_cap("closed", [(10.0, 0.0)], 10.0, 4) > 100 * two  # no schedule: generous, still bounded
