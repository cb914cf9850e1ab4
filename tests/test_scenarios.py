"""Scenario and run-length files load or fail naming the file and field; measurement plans, limits, sweep summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.config import (
    MAX_RATE_PER_PROCESS,
    RunLength,
    Scenario,
    available_scenarios,
    load_run_length,
    load_scenario,
    scenarios_dir,
)
from bench.errors import BenchError
from bench.load.schedule import POISSON, RateStage, arrival_offsets
from bench.measure.plan import Measurement, limits_for, plan_measurements, scheduled_rate
from bench.measure.sweep import sweep_summary
from bench.results.schema import Cell, Latency, LoadPoint, Rates, Validity

SHIPPED = ["batch", "probe", "ramp", "rate-constant", "rate-poisson", "smoke", "spike", "steady", "step", "sweep"]


def _write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = _write(tmp_path, text)
    with pytest.raises(BenchError) as caught:
        load_scenario(str(path))
    message = caught.value.message
    assert str(path) in message, message
    return message, path


# ---- shipped files -----------------------------------------------------------------------------


def test_shipped_scenarios_are_the_expected_set() -> None:
    assert available_scenarios() == SHIPPED
    assert "lengths" not in available_scenarios()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads(name: str) -> None:
    by_name = load_scenario(name)
    assert isinstance(by_name, Scenario)
    assert by_name.name == name  # the name inside matches the file
    assert load_scenario(str(scenarios_dir() / f"{name}.yaml")) == by_name  # by path too
    if by_name.loop == "open":
        assert [by_name.rate, by_name.stages, by_name.sweep].count(None) == 2
        assert by_name.users is None
    else:
        assert by_name.rate is None and by_name.stages is None


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_plans_under_every_length(name: str) -> None:
    scenario = load_scenario(name)
    for length_name in ("smoke", "quick", "full"):
        length = load_run_length(length_name)
        measurements = plan_measurements(scenario, length)
        assert measurements
        for m in measurements:
            assert m.duration_s >= 1.0 and m.warmup_s >= 0.0
            total = sum(d for d, _ in m.stages)
            assert total == pytest.approx(m.warmup_s + m.duration_s)
            limits = limits_for(scenario, length, m)
            if m.offered_rps:  # open loop: a clean run at the offered rate must be able to be valid
                assert m.offered_rps * m.duration_s >= limits.min_requests
                assert m.duration_s >= limits.min_duration_s


def test_shipped_scenario_details() -> None:
    spike = load_scenario("spike")
    assert spike.loop == "open" and spike.arrival == "poisson"
    assert [(s.duration_s, s.rate) for s in spike.stages or []] == [(25, 50), (5, 500), (30, 50)]
    steady = load_scenario("steady")
    assert steady.loop == "closed" and steady.users == 8
    assert load_scenario("batch").batch_sizes == [1, 8, 64]
    assert load_scenario("sweep").sweep == [50, 100, 200, 400, 800]


@pytest.mark.parametrize(("name", "scale", "min_warmup", "min_duration"),
                         [("smoke", 0.2, 1, 3), ("quick", 0.5, 2, 5), ("full", 1.0, 5, 10)])
def test_load_run_length(name: str, scale: float, min_warmup: float, min_duration: float) -> None:
    length = load_run_length(name)
    assert length == RunLength(name=name, time_scale=scale, min_warmup_s=min_warmup, min_duration_s=min_duration)


def test_unknown_run_length_lists_the_valid_ones() -> None:
    with pytest.raises(BenchError) as caught:
        load_run_length("turbo")
    assert "turbo" in caught.value.message
    assert caught.value.hint is not None
    for name in ("smoke", "quick", "full"):
        assert name in caught.value.hint


def test_length_scaling_and_floors() -> None:
    length = RunLength(name="p", time_scale=0.2, min_warmup_s=1.0, min_duration_s=3.0)
    assert length.duration(60.0) == pytest.approx(12.0)
    assert length.duration(10.0) == 3.0  # 2 s floored
    assert length.warmup(10.0) == pytest.approx(2.0)
    assert length.warmup(2.0) == 1.0  # 0.4 s floored
    assert length.warmup(0.0) == 0.0  # no warm-up asked, none given


# ---- invalid files -----------------------------------------------------------------------------


def test_open_loop_with_users(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\nrate: 10\nusers: 4\n")
    assert "'users'" in message and "closed loop" in message


def test_open_loop_with_rate_and_sweep(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\nrate: 10\nsweep: [10, 20]\n")
    assert "'rate'" in message and "'sweep'" in message and "exactly one" in message


def test_open_loop_without_any_load(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\n")
    assert "exactly one of 'rate', 'stages', 'sweep'" in message


@pytest.mark.parametrize("extra", ["rate: 10", "stages: [{duration_s: 5, rate: 10}]"])
def test_closed_loop_with_a_rate(tmp_path: Path, extra: str) -> None:
    message, _ = _error(tmp_path, f"name: x\nloop: closed\nusers: 4\n{extra}\n")
    assert "closed-loop" in message and "rate" in message and "'users'" in message


def test_closed_loop_with_users_and_sweep(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: closed\nusers: 4\nsweep: [1, 2]\n")
    assert "'users'" in message and "'sweep'" in message


def test_closed_loop_sweep_of_fractional_users(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: closed\nsweep: [1, 2.5]\n")
    assert "whole user counts" in message


@pytest.mark.parametrize(("text", "field"), [
    ("rate: -5", "field 'rate'"),
    ("rate: 0", "field 'rate'"),
    ("stages: [{duration_s: 5, rate: 10}, {duration_s: 5, rate: -1}]", "field 'stages.1.rate'"),
])
def test_negative_rate(tmp_path: Path, text: str, field: str) -> None:
    message, _ = _error(tmp_path, f"name: x\nloop: open\n{text}\n")
    assert field in message and "greater than 0" in message


def test_negative_sweep_rate(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\nsweep: [10, -5]\n")
    assert "rates must be positive" in message


@pytest.mark.parametrize(("text", "field"), [
    ("duration_s: 0", "field 'duration_s'"),
    ("duration_s: -3", "field 'duration_s'"),
    ("stages: [{duration_s: 0, rate: 10}]", "field 'stages.0.duration_s'"),
])
def test_zero_duration(tmp_path: Path, text: str, field: str) -> None:
    body = text if text.startswith("stages") else f"rate: 10\n{text}"
    message, _ = _error(tmp_path, f"name: x\nloop: open\n{body}\n")
    assert field in message and "greater than 0" in message


@pytest.mark.parametrize(("load", "processes"), [
    (f"rate: {MAX_RATE_PER_PROCESS + 1:.0f}", 1),
    (f"sweep: [100, {2 * MAX_RATE_PER_PROCESS + 1:.0f}]", 2),
    (f"stages: [{{duration_s: 5, rate: 10}}, {{duration_s: 1, rate: {3 * MAX_RATE_PER_PROCESS + 1:.0f}}}]", 3),
])
def test_impossible_rate(tmp_path: Path, load: str, processes: int) -> None:
    message, _ = _error(tmp_path, f"name: x\nloop: open\n{load}\ngenerator_processes: {processes}\n")
    assert f"{MAX_RATE_PER_PROCESS * processes:.0f} req/s" in message
    assert "generator_processes" in message


def test_rate_at_the_ceiling_is_allowed(tmp_path: Path) -> None:
    at_one = _write(tmp_path, f"name: x\nloop: open\nrate: {MAX_RATE_PER_PROCESS:.0f}\n", "one.yaml")
    assert load_scenario(str(at_one)).rate == MAX_RATE_PER_PROCESS
    two = _write(tmp_path, f"name: x\nloop: open\nrate: {2 * MAX_RATE_PER_PROCESS:.0f}\ngenerator_processes: 2\n",
                 "two.yaml")
    assert load_scenario(str(two)).generator_processes == 2


def test_unknown_key(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\nrate: 10\nratee: 5\n")
    assert "field 'ratee'" in message and "not permitted" in message


def test_unknown_key_inside_a_stage(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\nstages: [{duration_s: 5, rate: 10, ramp: true}]\n")
    assert "field 'stages.0.ramp'" in message


@pytest.mark.parametrize(("value", "field"), [
    ("[1, 0]", "field 'batch_sizes.1'"),  # the size out of range, by its place
    ("[5000]", "field 'batch_sizes.0'"),
    ("[-8]", "field 'batch_sizes.0'"),
    ("[]", "field 'batch_sizes'"),
    ("[a]", "field 'batch_sizes.0'"),
])
def test_bad_batch_size(tmp_path: Path, value: str, field: str) -> None:
    message, _ = _error(tmp_path, f"name: x\nloop: open\nrate: 10\nbatch_sizes: {value}\n")
    assert field in message


@pytest.mark.parametrize(("text", "field"), [
    ("loop: sideways\nrate: 10", "field 'loop'"),
    ("loop: open\nrate: 10\nslo: {percentile: p42, ms: 10}", "field 'slo.percentile'"),
    ("loop: open\nrate: 10\nmax_error_rate: 1.5", "field 'max_error_rate'"),
])
def test_other_bad_fields(tmp_path: Path, text: str, field: str) -> None:
    message, _ = _error(tmp_path, f"name: x\n{text}\n")
    assert field in message


def test_unknown_scenario_name_lists_the_valid_ones() -> None:
    with pytest.raises(BenchError) as caught:
        load_scenario("no-such-scenario")
    assert "unknown scenario 'no-such-scenario'" in caught.value.message
    hint = caught.value.hint
    assert hint is not None
    for name in SHIPPED:
        assert name in hint
    assert "lengths" not in hint


def test_missing_scenario_path(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as caught:
        load_scenario(str(tmp_path / "absent.yaml"))
    assert str(tmp_path / "absent.yaml") in caught.value.message


def test_malformed_yaml(tmp_path: Path) -> None:
    message, _ = _error(tmp_path, "name: x\nloop: open\n  rate: [10\n")
    assert "malformed YAML" in message and "line 3" in message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    message, _ = _error(tmp_path, text)
    assert "mapping" in message


# ---- plan_measurements -------------------------------------------------------------------------

SMOKE = RunLength(name="smoke", time_scale=0.2, min_warmup_s=1.0, min_duration_s=3.0)
FULL = RunLength(name="full", time_scale=1.0, min_warmup_s=5.0, min_duration_s=10.0)


def _scenario(**fields: Any) -> Scenario:
    return Scenario(**{"name": "t", "loop": "open", **fields})


def test_sweep_times_batch_sizes_is_the_cross_product() -> None:
    scenario = _scenario(sweep=[50, 100, 200], batch_sizes=[1, 8], warmup_s=10, duration_s=30)
    measurements = plan_measurements(scenario, FULL)
    assert [(m.label, m.batch_size, m.offered_rps) for m in measurements] == [
        ("rate=50,batch=1", 1, 50), ("rate=100,batch=1", 1, 100), ("rate=200,batch=1", 1, 200),
        ("rate=50,batch=8", 8, 50), ("rate=100,batch=8", 8, 100), ("rate=200,batch=8", 8, 200),
    ]
    assert len({m.label for m in measurements}) == 6
    for m in measurements:
        assert m.loop == "open" and m.users is None
        assert m.warmup_s == 10 and m.duration_s == 30
        assert m.stages == [(40.0, m.offered_rps)]  # warm-up and measurement at the same rate


def test_single_batch_size_labels_have_no_batch_suffix() -> None:
    measurements = plan_measurements(_scenario(sweep=[12.5, 400]), FULL)
    assert [m.label for m in measurements] == ["rate=12.5", "rate=400"]
    assert [m.label for m in plan_measurements(_scenario(rate=100), FULL)] == ["rate=100"]


def test_stage_scenario_prepends_a_warmup_at_the_first_rate() -> None:
    scenario = _scenario(arrival="poisson", warmup_s=10,
                         stages=[{"duration_s": 20, "rate": 50}, {"duration_s": 10, "rate": 200}])
    (measurement,) = plan_measurements(scenario, FULL)
    assert measurement.label == "stages"
    assert measurement.arrival == POISSON
    assert measurement.stages == [(10.0, 50.0), (20.0, 50.0), (10.0, 200.0)]
    assert measurement.warmup_s == 10.0 and measurement.duration_s == 30.0
    # time-weighted mean over the measured stages (warm-up excluded): (20*50 + 10*200) / 30
    assert measurement.offered_rps == pytest.approx(100.0)


def test_scheduled_rate_is_what_the_seeded_schedule_holds_in_the_window() -> None:
    constant = _scenario(rate=50, warmup_s=5, duration_s=25)
    (measurement,) = plan_measurements(constant, SMOKE)
    assert scheduled_rate(measurement, constant) == pytest.approx(50.0)
    poisson = _scenario(rate=50, warmup_s=5, duration_s=25, arrival="poisson", seed=3)
    (measurement,) = plan_measurements(poisson, SMOKE)  # 1 s of warm-up, then 5 s measured
    offsets = arrival_offsets([RateStage(6.0, 50.0)], POISSON, seed=3, warmup_s=1.0)
    expected = int(((offsets >= 1.0) & (offsets < 6.0)).sum()) / 5.0
    assert scheduled_rate(measurement, poisson) == pytest.approx(expected)
    assert expected != pytest.approx(50.0)  # a draw, not the nominal rate
    closed = _scenario(loop="closed", users=4)
    (measurement,) = plan_measurements(closed, SMOKE)
    assert scheduled_rate(measurement, closed) is None


def test_stage_scenario_scaled_by_length_with_one_second_floor() -> None:
    scenario = _scenario(warmup_s=10, stages=[{"duration_s": 25, "rate": 50}, {"duration_s": 2, "rate": 500},
                                              {"duration_s": 30, "rate": 50}])
    (measurement,) = plan_measurements(scenario, SMOKE)
    # 25 * 0.2 = 5, 2 * 0.2 = 0.4 -> floored to 1, 30 * 0.2 = 6; warm-up 10 * 0.2 = 2
    assert measurement.stages == [(2.0, 50.0), (5.0, 50.0), (1.0, 500.0), (6.0, 50.0)]
    assert measurement.duration_s == pytest.approx(12.0)
    assert measurement.offered_rps == pytest.approx((5 * 50 + 1 * 500 + 6 * 50) / 12)


def test_stage_scenario_without_warmup_has_no_warmup_stage() -> None:
    scenario = _scenario(warmup_s=0, stages=[{"duration_s": 20, "rate": 50}])
    (measurement,) = plan_measurements(scenario, FULL)
    assert measurement.warmup_s == 0.0
    assert measurement.stages == [(20.0, 50.0)]


def test_stage_scenario_with_batches() -> None:
    scenario = _scenario(stages=[{"duration_s": 20, "rate": 50}], batch_sizes=[1, 4])
    assert [(m.label, m.batch_size) for m in plan_measurements(scenario, FULL)] == [
        ("stages,batch=1", 1), ("stages,batch=4", 4)]


def test_closed_loop_has_users_and_no_offered_rate() -> None:
    scenario = Scenario(name="c", loop="closed", users=8, warmup_s=10, duration_s=60)
    (measurement,) = plan_measurements(scenario, SMOKE)
    assert measurement.loop == "closed"
    assert measurement.users == 8 and measurement.offered_rps is None and measurement.label == "users=8"
    assert measurement.warmup_s == pytest.approx(2.0) and measurement.duration_s == pytest.approx(12.0)
    ((total, rate),) = measurement.stages
    assert total == pytest.approx(14.0) and rate == 0.0


def test_closed_loop_sweep_of_users() -> None:
    scenario = Scenario(name="c", loop="closed", sweep=[1, 4, 16], batch_sizes=[2])
    measurements = plan_measurements(scenario, FULL)
    assert [(m.label, m.users, m.batch_size, m.offered_rps) for m in measurements] == [
        ("users=1", 1, 2, None), ("users=4", 4, 2, None), ("users=16", 16, 2, None)]


@pytest.mark.parametrize(("length", "warmup", "duration"), [
    (SMOKE, 2.0, 6.0),  # 10 * 0.2, 30 * 0.2
    (RunLength(name="q", time_scale=0.5, min_warmup_s=2.0, min_duration_s=5.0), 5.0, 15.0),
    (FULL, 10.0, 30.0),
])
def test_durations_scaled_by_length(length: RunLength, warmup: float, duration: float) -> None:
    (measurement,) = plan_measurements(_scenario(rate=50, warmup_s=10, duration_s=30), length)
    assert measurement.warmup_s == pytest.approx(warmup)
    assert measurement.duration_s == pytest.approx(duration)
    ((total, rate),) = measurement.stages
    assert total == pytest.approx(warmup + duration) and rate == 50.0


def test_durations_floored_by_length() -> None:
    (measurement,) = plan_measurements(_scenario(rate=50, warmup_s=2, duration_s=5), SMOKE)
    assert measurement.warmup_s == 1.0  # 0.4 -> min_warmup_s
    assert measurement.duration_s == 3.0  # 1.0 -> min_duration_s
    assert measurement.stages == [(4.0, 50.0)]


# ---- limits_for --------------------------------------------------------------------------------


def _measurement() -> Measurement:
    return plan_measurements(_scenario(rate=100), FULL)[0]


@pytest.mark.parametrize(("scale", "expected"), [(0.2, 200), (0.5, 500), (1.0, 1000), (2.0, 1000), (0.0001, 1),
                                                 (0.3333, 334)])
def test_limits_scale_min_requests_capped_at_one(scale: float, expected: int) -> None:
    scenario = _scenario(rate=100, min_requests=1000, slo={"percentile": "p95", "ms": 25}, max_error_rate=0.05)
    length = RunLength(name="p", time_scale=scale, min_duration_s=4.0)
    limits = limits_for(scenario, length, _measurement())
    assert limits.min_requests == expected
    assert limits.min_requests == max(1, math.ceil(1000 * min(1.0, scale)))
    assert limits.slo_ms == 25 and limits.slo_percentile == "p95"
    assert limits.max_error_rate == 0.05
    assert limits.min_duration_s == 4.0


def test_limits_for_shipped_smoke_length() -> None:
    scenario = load_scenario("rate-constant")
    limits = limits_for(scenario, load_run_length("smoke"), plan_measurements(scenario, load_run_length("smoke"))[0])
    assert limits.min_requests == 200  # 1000 * 0.2
    assert limits.min_duration_s == 3.0


# ---- sweep_summary -----------------------------------------------------------------------------


def _cell(label: str, offered: float | None, throughput: float, p99: float | None, slo_met: bool | None,
          valid: bool, batch: int = 1, runtime: str = "fastapi", users: int | None = None) -> Cell:
    return Cell(cell_id=f"{runtime}-{label}", runtime=runtime, model="iris", scenario="sweep", target="local",
                batch_size=batch, label=label, load=LoadPoint(users=users, offered_rps=offered),
                rates=Rates(throughput_rps=throughput), latency=Latency(p99=p99), slo_met=slo_met,
                validity=Validity(valid=valid))


def _sweeps(cells: list[Cell]) -> list[dict[str, Any]]:
    return [sweep.model_dump() for sweep in sweep_summary(tuple(cells))]


def test_sweep_summary_picks_highest_valid_load_within_slo() -> None:
    cells = [
        _cell("rate=50", 50, 50, 5, True, True),
        _cell("rate=400", 400, 398, 30, True, True),  # the answer
        _cell("rate=100", 100, 100, 8, True, True),
        _cell("rate=800", 800, 790, 45, True, False),  # met the SLO but invalid (generator fell behind)
        _cell("rate=1600", 1600, 900, 900, False, True),  # valid but over the SLO
    ]
    (summary,) = _sweeps(cells)
    assert summary["max_load_within_slo"] == "rate=400"
    assert summary["max_throughput_within_slo_rps"] == 398
    assert (summary["runtime"], summary["model"], summary["batch_size"]) == ("fastapi", "iris", 1)
    assert [p["label"] for p in summary["points"]] == ["rate=50", "rate=400", "rate=100", "rate=800", "rate=1600"]
    assert summary["points"][1] == {"label": "rate=400", "offered_rps": 400, "users": None, "throughput_rps": 398,
                                    "p99_ms": 30, "slo_met": True, "valid": True}


def test_sweep_summary_groups_by_runtime_and_batch() -> None:
    cells = [
        _cell("rate=50,batch=1", 50, 50, 5, True, True, batch=1),
        _cell("rate=100,batch=1", 100, 100, 9, True, True, batch=1),
        _cell("rate=50,batch=8", 50, 50, 40, True, True, batch=8),
        _cell("rate=100,batch=8", 100, 99, 80, False, True, batch=8),
        _cell("rate=50", 50, 50, 60, False, True, runtime="mlserver"),
    ]
    best = {(s["runtime"], s["batch_size"]): s["max_load_within_slo"] for s in _sweeps(cells)}
    assert best == {("fastapi", 1): "rate=100,batch=1", ("fastapi", 8): "rate=50,batch=8", ("mlserver", 1): None}
    none = next(s for s in _sweeps(cells) if s["runtime"] == "mlserver")
    assert none["max_throughput_within_slo_rps"] is None


def test_sweep_summary_closed_loop_ranks_by_throughput() -> None:
    cells = [
        _cell("users=1", None, 200, 4, True, True, users=1),
        _cell("users=4", None, 650, 12, True, True, users=4),
        _cell("users=16", None, 700, 90, False, True, users=16),
    ]
    (summary,) = _sweeps(cells)
    assert summary["max_load_within_slo"] == "users=4"
    assert [p["users"] for p in summary["points"]] == [1, 4, 16]


def test_sweep_summary_skips_failed_cells() -> None:
    failed = _cell("rate=800", 800, 0.0, None, None, False)
    (summary,) = _sweeps([_cell("rate=50", 50, 50, 5, True, True), failed])
    assert summary["max_load_within_slo"] == "rate=50"
    assert _sweeps([]) == []


def test_a_runtimes_longer_warm_up_leaves_the_windows_arrivals_as_they_were() -> None:
    """Ray Serve's runtime.yaml asks for 5 s of warm-up, the smoke run length gives others 1 s: the same seed must
    still put the same arrivals in both windows (make bench once scheduled 749 against 721)."""
    scenario = _scenario(rate=50, warmup_s=5, duration_s=25, arrival="poisson", seed=3)
    (short,) = plan_measurements(scenario, SMOKE)
    long = short.with_warmup_at_least(5.0)
    assert (short.warmup_s, long.warmup_s) == (1.0, 5.0) and short.duration_s == long.duration_s
    windows = []
    for measurement in (short, long):
        offsets = arrival_offsets([RateStage(d, r) for d, r in measurement.stages], POISSON, seed=3,
                                  warmup_s=measurement.warmup_s)
        windows.append(offsets[offsets >= measurement.warmup_s] - measurement.warmup_s)
    np.testing.assert_allclose(windows[0], windows[1], atol=1e-9)
    assert scheduled_rate(short, scenario) == scheduled_rate(long, scenario)
