"""Recorded and bursty arrivals: a trace file read in every unit it may be written in, replayed from its start
at a time scale and looped, its warm-up taken from its end; gamma gaps with the coefficient of variation asked
for; and the command line's checks of these options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli.arrival_options import add_arrival_options, with_arrivals
from bench.config import Scenario
from bench.errors import BenchError
from bench.load.schedule import POISSON, ArrivalProcess, RateStage, arrival_offsets, count_between, worker_slots
from bench.load.trace import read_trace

TIMES_MS = [1000.0, 1000.5, 1001.0, 1250.0, 1900.0, 1900.25, 2000.0, 3000.0]  # span 2 s, 8 requests


def _trace(tmp_path: Path, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text("user,timestamp_ms\n" + "".join(f"u{i},{t}\n" for i, t in enumerate(TIMES_MS)))
    read_trace.cache_clear()
    return path


def test_a_csv_trace_in_milliseconds_becomes_offsets_from_its_first_request(tmp_path: Path) -> None:
    trace = read_trace(str(_trace(tmp_path)))
    np.testing.assert_allclose(trace.offsets, (np.array(TIMES_MS) - 1000.0) / 1000.0)
    assert trace.period_s == pytest.approx(2.0 * 8 / 7)  # the span plus the mean gap
    assert trace.mean_rps == pytest.approx(7 / 2.0)


def test_json_lines_of_intervals_in_microseconds_read_as_the_same_trace(tmp_path: Path) -> None:
    gaps_us = np.diff(np.array(TIMES_MS)) * 1000.0
    path = tmp_path / "gaps.jsonl"
    path.write_text("".join(json.dumps({"interval_us": gap, "path": "/predict"}) + "\n" for gap in [0.0, *gaps_us]))
    read_trace.cache_clear()
    np.testing.assert_allclose(read_trace(str(path)).offsets, (np.array(TIMES_MS) - 1000.0) / 1000.0, atol=1e-12)


@pytest.mark.parametrize(("text", "fact"), [
    ("when\n1\n2\n", "no arrival column"),
    ("timestamp,interval\n1,1\n2,1\n", "more than one arrival column"),
    ("timestamp\n1\n3\n2\n", "row 3 is earlier"),
    ("timestamp\n1\nsoon\n", "row 2 of column timestamp is not a number"),
    ("interval_ms\n1\n-1\n", "row 2 has a negative interval_ms"),
    ("timestamp\n5\n", "at least two requests"),
])
def test_a_trace_that_cannot_be_replayed_is_a_one_line_error(tmp_path: Path, text: str, fact: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    read_trace.cache_clear()
    with pytest.raises(BenchError, match=fact) as raised:
        read_trace(str(path))
    assert "\n" not in str(raised.value) and raised.value.hint


def test_a_trace_replays_from_its_start_and_loops_at_its_period(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    trace = read_trace(str(path))
    offsets = arrival_offsets([RateStage(5.0, trace.mean_rps)], ArrivalProcess("trace", trace_file=str(path)))
    expected = np.concatenate([trace.offsets + loop * trace.period_s for loop in range(3)])
    np.testing.assert_allclose(offsets, expected[expected < 5.0])


def test_a_time_scale_of_two_replays_twice_as_fast(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    trace = read_trace(str(path))
    offsets = arrival_offsets([RateStage(1.0, 2 * trace.mean_rps)], ArrivalProcess("trace", trace_file=str(path)))
    np.testing.assert_allclose(offsets, trace.offsets[trace.offsets < 2.0] / 2)


def test_the_warm_up_replays_the_traces_end_and_the_window_its_start(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    trace = read_trace(str(path))
    process = ArrivalProcess("trace", trace_file=str(path))
    offsets = arrival_offsets([RateStage(2.5, trace.mean_rps)], process, warmup_s=0.5)
    warm, window = offsets[offsets < 0.5], offsets[offsets >= 0.5] - 0.5
    np.testing.assert_allclose(window, trace.offsets[trace.offsets < 2.0])
    tail = trace.offsets[trace.offsets >= trace.period_s - 0.5] - (trace.period_s - 0.5)
    np.testing.assert_allclose(warm, tail)
    assert count_between([RateStage(2.5, trace.mean_rps)], process, 0, 0.5, 2.5, warmup_s=0.5) == len(window)
    slots = sorted(s for worker in range(3) for s in worker_slots([RateStage(2.5, trace.mean_rps)], process, 0,
                                                                   worker, 3, warmup_s=0.5))
    np.testing.assert_allclose(slots, offsets)


@pytest.mark.parametrize("cv", [0.5, 2.0, 3.0])
def test_gamma_gaps_have_the_coefficient_of_variation_asked_for(cv: float) -> None:
    offsets = arrival_offsets([RateStage(2000.0, 100.0)], ArrivalProcess("gamma", cv=cv), seed=4)
    gaps = np.diff(offsets)
    assert len(offsets) == pytest.approx(200_000, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.10)


def test_gamma_with_a_cv_of_one_is_as_random_as_poisson() -> None:
    gamma = np.diff(arrival_offsets([RateStage(500.0, 200.0)], ArrivalProcess("gamma", cv=1.0), seed=1))
    poisson = np.diff(arrival_offsets([RateStage(500.0, 200.0)], POISSON, seed=1))
    assert gamma.std() / gamma.mean() == pytest.approx(poisson.std() / poisson.mean(), rel=0.03)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arrival_options(parser)
    return parser.parse_args(list(argv))


OPEN = Scenario(name="open", loop="open", arrival="poisson", rate=50.0)


def test_arrivals_with_several_time_scales_become_a_sweep_of_the_traces_rates(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    scenario = with_arrivals(OPEN, _args("--arrivals", str(path), "--time-scale", "0.5,2"))
    assert scenario.arrival == "trace" and scenario.arrivals_file == str(path.resolve())
    assert scenario.rate is None and scenario.sweep == pytest.approx([0.5 * 3.5, 2 * 3.5])


def test_arrival_cv_alone_means_gamma() -> None:
    scenario = with_arrivals(OPEN, _args("--arrival-cv", "2.5"))
    assert (scenario.arrival, scenario.arrival_cv, scenario.rate) == ("gamma", 2.5, 50.0)


@pytest.mark.parametrize(("argv", "option"), [
    (["--time-scale", "2"], "--time-scale"),
    (["--arrival", "poisson", "--arrival-cv", "2"], "--arrival-cv"),
    (["--arrivals", "TRACE", "--arrival", "gamma"], "--arrivals"),
    (["--arrivals", "TRACE", "--time-scale", "0"], "--time-scale"),
    (["--arrivals", "missing.csv"], "missing.csv"),
])
def test_arrival_options_that_contradict_are_refused(tmp_path: Path, argv: list[str], option: str) -> None:
    path = _trace(tmp_path)
    with pytest.raises(BenchError, match=option):
        with_arrivals(OPEN, _args(*[str(path) if part == "TRACE" else part for part in argv]))
