"""The ground truth `bench calibrate` compares the generator with, and its typed report (pure logic, no
servers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import bench.measure.calibrate
from bench.cli.console import calibration_table
from bench.events import EventHook, Message
from bench.load.plan import LoadPlan
from bench.measure.calibrate import (
    Accuracy,
    CalibrationReport,
    Ceiling,
    LoopAccuracy,
    Stall,
    StallLoop,
    calibrate,
    true_stall_latencies,
)
from bench.measure.generator_ceiling import OpenLoopCeiling
from bench.measure.known_servers import ServerRecord
from bench.results.sample_file import FrameSamples
from bench.results.schema import Latency
from bench.targets.launch import CpuPlan


def test_requests_meeting_a_stall_wait_for_its_end() -> None:
    scheduled = np.array([0.0, 1.0, 1.05, 1.19, 1.2, 2.0])
    latency = true_stall_latencies(scheduled, [(1.0, 1.2)], base_ms=2.0)
    np.testing.assert_allclose(latency, [2.0, 202.0, 152.0, 12.0, 2.0, 2.0])


def test_uniform_arrivals_against_periodic_stalls_have_the_analytic_p99() -> None:
    """200 ms stalls every 2 s hit 10% of uniform arrivals, each waiting U(0, 200) ms: p99 is 180 ms."""
    scheduled = np.arange(0.0, 200.0, 0.001)
    stalls = [(start + 1.8, start + 2.0) for start in np.arange(0.0, 200.0, 2.0)]
    latency = true_stall_latencies(scheduled, stalls, base_ms=0.0)
    assert abs(np.percentile(latency, 99) - 180.0) < 0.5
    assert abs(np.mean(latency > 0) - 0.10) < 0.001


def _latency(p50: float, p99: float) -> dict[str, float]:
    return {"p50": p50, "p90": p50, "p95": p99, "p99": p99, "p999": p99, "max": p99, "mean": p50}


def _report(wrk_rps: float | None = None) -> CalibrationReport:
    truth = Latency(**_latency(5.2, 5.6))
    loop = LoopAccuracy(**_latency(5.25, 5.9), truth=truth, round_trip_ms=0.2, p50_error=0.01, p99_error=0.05,
                        p50_error_vs_server_side=0.05)
    return CalibrationReport(
        cpus=CpuPlan((1,), (0,)),
        ceiling=Ceiling(servebench_rps=1900.0, plain_locust_rps=2000.0, wrk_rps=wrk_rps,
                        servebench_rounds=(1900.0, 1850.0, 1950.0), plain_locust_rounds=(2000.0,),
                        recording_overhead=0.05, users=32, target_met=True),
        open_loop=OpenLoopCeiling(rps=12000.0, first_failed_rps=14000.0, users=64, steps=()),
        accuracy=Accuracy(open=loop, closed=loop, server_side=Latency(**_latency(5.0, 5.4)), target_met=True),
        stall=Stall(open=StallLoop(**_latency(6.0, 178.0), p99_error=-0.011),
                    closed=StallLoop(**_latency(5.5, 9.0), p99_error=-0.95),
                    truth=Latency(**_latency(5.1, 180.0)), target_met=True),
        targets_met=True,
    )


def test_the_json_keeps_the_figures_where_users_of_the_file_find_them() -> None:
    data = json.loads(_report().as_json())
    assert data["ceiling"]["servebench_rps"] == 1900.0 and data["ceiling"]["servebench_rounds"] == [1900, 1850, 1950]
    assert data["accuracy"]["open"]["p50"] == 5.25 and data["accuracy"]["open"]["truth"]["p99"] == 5.6
    assert data["accuracy"]["server_side"]["p50"] == 5.0
    assert data["stall"]["truth"]["p99"] == 180.0 and data["stall"]["closed"]["p99_error"] == -0.95
    assert data["cpus"] == {"server": [1], "generator": [0], "generator_priority": "real-time"}
    assert data["targets_met"] is True


def test_the_json_reads_back_as_the_same_report() -> None:
    report = _report(wrk_rps=2500.0)
    again = CalibrationReport.from_json(report.as_json())
    assert again == report
    assert again.stall.open.p99_error == -0.011 and again.cpus.server == (1,)


def test_the_table_shows_every_measurement_with_its_target() -> None:
    console = Console(record=True, width=400)
    console.print(calibration_table(_report()))
    text = console.export_text()
    assert "1,900 req/s" in text and "wrk not installed" in text and "0.95x plain FastHttpUser (>= 0.90x) met" in text
    assert "1b. open-loop ceiling" in text and "12,000 req/s" in text and "first failed 14,000 req/s" in text
    assert "p50 5.250 ms, p99 5.900 ms" in text and "5.000 + round trip 0.200 = 5.200 ms" in text
    assert "p50 within 3% met" in text
    assert "true p99 180.0 ms" in text and "-1.1% (<= 10%) met" in text and "(closed loop hides stalls)" in text


def test_calibrate_assembles_every_figure_from_the_measurements(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """No servers: each load answers every request in 6 ms, each server records 5 ms of handling."""

    @contextmanager
    def server(mode: str, _cpus: object, _folder: Path) -> Iterator[Any]:
        yield SimpleNamespace(url=f"http://calibration/{mode}",
                              record=lambda: ServerRecord(mode=mode, durations_ms=[5.0] * 50, stalls=[]))

    def load(plan: LoadPlan, _cpus: object, _log: Path, **_: object) -> Any:
        scheduled = np.linspace(plan.start_at, plan.start_at + plan.total_s, 200, endpoint=False)
        return SimpleNamespace(samples=FrameSamples(pd.DataFrame({"scheduled": scheduled, "latency_ms": 6.0})))

    monkeypatch.setattr(bench.measure.calibrate, "calibration_server", server)
    monkeypatch.setattr(bench.measure.calibrate, "run_load", load)
    monkeypatch.setattr(bench.measure.calibrate, "_plain_locust_rps", lambda *_args: 100.0)
    monkeypatch.setattr(bench.measure.calibrate, "_wrk_rps", lambda *_args: None)
    monkeypatch.setattr(bench.measure.calibrate, "measure_open_loop_ceiling", lambda *_args: OpenLoopCeiling(
        rps=3000.0, first_failed_rps=4000.0, users=64, steps=()))
    said: list[Message] = []
    report = calibrate(CpuPlan((1,), (0,)), 2.0, EventHook[Message](said.append), keep=tmp_path)
    assert report.ceiling.plain_locust_rps == 100.0 and report.ceiling.wrk_rps is None
    assert len(report.ceiling.servebench_rounds) == 3 and report.ceiling.recording_overhead is not None
    for loop, accuracy in report.accuracy.loops():
        # the round trip is the 1 ms the client sees beyond the server's 5 ms, so the truth is 6 ms: no error
        assert (accuracy.p50, accuracy.round_trip_ms, accuracy.truth.p50) == pytest.approx((6.0, 1.0, 6.0)), loop
        assert accuracy.p50_error == pytest.approx(0.0) and accuracy.p50_error_vs_server_side == pytest.approx(0.2)
    assert report.accuracy.server_side.p50 == 5.0 and report.accuracy.target_met
    # no stall was logged: the truth is the server's 5 ms, which both loops overstate by 20%
    assert report.stall.truth.p99 == 5.0
    assert [loop.p99_error for _, loop in report.stall.loops()] == pytest.approx([0.2, 0.2])
    assert report.open_loop is not None and report.open_loop.rps == 3000.0
    assert not report.stall.target_met and not report.targets_met
    assert any("ceiling round 3/3" in message.text for message in said)


def test_a_report_written_before_the_open_loop_ceiling_still_reads() -> None:
    data = json.loads(_report().as_json())
    del data["open_loop"]
    assert CalibrationReport.from_json(json.dumps(data)).open_loop is None


def test_the_open_loop_ceiling_doubles_then_bisects_to_the_highest_rate_kept_up(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A generator that sends on time up to 10,000 req/s and falls 30% behind above it."""
    import bench.measure.generator_ceiling as ceiling_module

    @contextmanager
    def server(_mode: str, _cpus: object, _folder: Path) -> Iterator[Any]:
        yield SimpleNamespace(url="http://calibration/noop")

    def load(plan: LoadPlan, _cpus: object, _log: Path, **_: object) -> Any:
        rate = plan.stages[0][1]
        scheduled = np.linspace(plan.start_at, plan.start_at + plan.total_s, int(rate * plan.total_s), endpoint=False)
        lag = 0.0 if rate <= 10_000 else 0.3 * (scheduled - plan.start_at)  # sends drift later and later
        return SimpleNamespace(samples=FrameSamples(pd.DataFrame({"scheduled": scheduled, "sent": scheduled + lag})),
                               generator_cpu_max=50.0)

    monkeypatch.setattr(ceiling_module, "calibration_server", server)
    monkeypatch.setattr(ceiling_module, "run_load", load)
    result = ceiling_module.measure_open_loop_ceiling(CpuPlan((1,), (0,)), tmp_path, 2.0, EventHook[Message]())
    assert [step.rate for step in result.steps] == [1000, 2000, 4000, 8000, 16000, 16000, 12000, 12000, 10000]
    assert result.rps == 10000 and result.first_failed_rps == 12000
    assert [step.kept_up for step in result.steps] == [True, True, True, True, False, False, False, False, True]


def test_one_late_step_is_tried_again_and_a_stall_of_the_host_is_not_the_ceiling(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first 2,000 req/s step meets a 5 ms stall; its second try keeps time, and the search goes on."""
    import bench.measure.generator_ceiling as ceiling_module

    @contextmanager
    def server(_mode: str, _cpus: object, _folder: Path) -> Iterator[Any]:
        yield SimpleNamespace(url="http://calibration/noop")

    tries: list[float] = []

    def load(plan: LoadPlan, _cpus: object, _log: Path, **_: object) -> Any:
        rate = plan.stages[0][1]
        tries.append(rate)
        scheduled = np.linspace(plan.start_at, plan.start_at + plan.total_s, int(rate * plan.total_s), endpoint=False)
        stalled = rate == 2000 and tries.count(rate) == 1
        lag = np.where(stalled & (scheduled - plan.start_at > 1.5), 0.005, 0.0) if rate <= 4000 else 0.01
        return SimpleNamespace(samples=FrameSamples(pd.DataFrame({"scheduled": scheduled, "sent": scheduled + lag})),
                               generator_cpu_max=50.0)

    monkeypatch.setattr(ceiling_module, "calibration_server", server)
    monkeypatch.setattr(ceiling_module, "run_load", load)
    result = ceiling_module.measure_open_loop_ceiling(CpuPlan((1,), (0,)), tmp_path, 2.0, EventHook[Message]())
    assert [(step.rate, step.kept_up) for step in result.steps][:3] == [(1000, True), (2000, False), (2000, True)]
    assert result.rps == 4000 and result.first_failed_rps == 5000
