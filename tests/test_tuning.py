"""Knobs in runtime.yaml and the tuning search, against simulated capacities (pure logic, no servers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.config import load_runtime
from bench.errors import BenchError
from bench.knobs import Config, Knob, config_label, grid, knob_env, over_budget
from bench.measure.tune_run import common_rate, p99_at
from bench.measure.tuning import TuningOutcome, tuning_search
from bench.report.tuning import ranking, ranking_verdict
from bench.results.schema import Cell, Latency, LoadPoint, Slo, TunedConfig, TuningRecord, Validity
from bench.targets.launch import render_launch

TUNABLE = Path(__file__).parent / "data" / "fake-tunable"


def knob(name: str, values: list[int], default: int, **extra: object) -> Knob:
    return Knob.model_validate({"name": name, "values": values, "default": default, **extra})


def run_search(knobs: list[Knob], capacity: Callable[[Config], float | None], cpus: int = 1,
               max_configs: int = 20) -> tuple[list[Config], TuningOutcome]:
    steps = tuning_search(knobs, cpus, max_configs)
    asked: list[Config] = []
    try:
        config = next(steps)
        while True:
            asked.append(config)
            config = steps.send(capacity(config))
    except StopIteration as done:
        return asked, done.value


def test_a_small_space_is_measured_whole_default_first_and_the_best_kept() -> None:
    knobs = [knob("workers", [1, 2], 1), knob("threads", [1, 4], 4)]
    asked, outcome = run_search(knobs, lambda c: 100.0 * int(c["workers"]) + int(c["threads"]))
    assert asked[0] == {"workers": 1, "threads": 4} and len(asked) == 4 and outcome.search == "grid"
    assert outcome.best.config == {"workers": 2, "threads": 4} and outcome.best.score == 204


def test_coordinate_descent_finds_the_best_of_a_separable_space_in_few_configurations() -> None:
    """Capacity peaks at a=3, b=2, c=1 and falls away from each: descent needs no full grid (27)."""
    knobs = [knob("a", [1, 2, 3], 1), knob("b", [1, 2, 3], 1), knob("c", [1, 2, 3], 3)]

    def capacity(config: Config) -> float:
        return 1000.0 - 50 * abs(int(config["a"]) - 3) - 30 * abs(int(config["b"]) - 2) - 10 * abs(int(config["c"]) - 1)

    asked, outcome = run_search(knobs, capacity)
    assert outcome.search == "coordinate descent" and outcome.best.config == {"a": 3, "b": 2, "c": 1}
    assert len(asked) < 27 and len({config_label(c) for c in asked}) == len(asked)  # nothing measured twice


def test_ties_keep_the_default_and_no_capacity_never_wins() -> None:
    knobs = [knob("workers", [1, 2], 1)]
    _, tied = run_search(knobs, lambda _c: 50.0)
    assert tied.best.config == {"workers": 1}
    _, broken = run_search(knobs, lambda c: None if c["workers"] == 2 else 10.0)
    assert broken.best.config == {"workers": 1}


def test_configurations_over_the_cpu_budget_are_skipped_with_the_reason() -> None:
    knobs = [knob("workers", [1, 2, 4], 1, max_per_cpu=2)]
    asked, outcome = run_search(knobs, lambda c: float(int(c["workers"])), cpus=1)
    assert asked == [{"workers": 1}, {"workers": 2}]
    assert outcome.skipped == (({"workers": 4}, "workers=4 is more than 2 per CPU on 1 CPU(s)"),)
    asked_two_cpus, _ = run_search(knobs, lambda c: float(int(c["workers"])), cpus=2)
    assert {"workers": 4} in asked_two_cpus


def test_max_configs_caps_what_is_measured() -> None:
    knobs = [knob("a", [1, 2, 3, 4, 5], 1)]
    asked, outcome = run_search(knobs, lambda c: float(int(c["a"])), max_configs=3)
    assert len(asked) == 3 and outcome.best.config == {"a": 3}


def test_a_runtime_folder_declares_knobs_that_reach_the_server_by_env_and_placeholder() -> None:
    runtime = load_runtime(str(TUNABLE))
    assert runtime.config == {"service_ms": 12, "workers": 1} and runtime.settings["service_ms"] == 12
    fast = runtime.configured({"service_ms": 4})
    values = {"python": "py", "runtime_dir": "/r", "host": "h", "port": "1", "model_dir": "/m"}
    launch = render_launch(fast, "m", values)
    assert launch.env["FAKE_SERVICE_MS"] == "4" and launch.env["FAKE_WORKERS"] == "1"
    assert fast.settings["service_ms"] == 4 and knob_env(fast.knobs, fast.config) == {"FAKE_WORKERS": "1"}
    assert over_budget(fast.knobs, {"service_ms": 4, "workers": 4}, 1) is not None
    assert len(grid(fast.knobs)) == 4
    with pytest.raises(ValueError, match="not one of"):
        runtime.configured({"service_ms": 7})


@pytest.mark.parametrize(("knobs", "message"), [
    ("[{name: w, values: [1, 2], default: 3}]", "default 3 is not one of its values"),
    ("[{name: w, values: [1, 1], default: 1}]", "values repeat"),
    ("[{name: w, values: [], default: 1}]", "at least 1 item"),
])
def test_a_bad_knob_is_a_one_line_error_naming_the_file(tmp_path: Path, knobs: str, message: str) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "runtime.yaml").write_text(TUNABLE.joinpath("runtime.yaml").read_text().split("knobs:")[0]
                                         .replace("{knob_service_ms}", "5") + f"knobs: {knobs}\n")
    with pytest.raises(BenchError, match=message) as raised:
        load_runtime(str(folder))
    assert "runtime.yaml: field 'knobs" in raised.value.message


def test_a_placeholder_naming_no_knob_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "runtime.yaml").write_text(TUNABLE.joinpath("runtime.yaml").read_text().replace(
        "{knob_service_ms}", "{knob_nothing}"))
    with pytest.raises(BenchError, match="names no knob"):
        load_runtime(str(folder))


def tuned(capacity: float | None, low: float | None = None, high: float | None = None, **config: int) -> TunedConfig:
    return TunedConfig(config=dict(config), capacity_rps=capacity, ci_low=low, ci_high=high)


def record(runtime: str, default: TunedConfig, best: TunedConfig) -> TuningRecord:
    return TuningRecord(runtime=runtime, model="m", slo=Slo(ms=50), search="grid", server_cpus=1, default=default,
                        best=best, tried=(default, best))


def test_the_verdict_says_when_defaults_would_have_ranked_differently() -> None:
    """a beats b at defaults (200 vs 100, clear); tuned, b reaches 400 and beats a's 210."""
    records = [record("a", tuned(200, 190, 210, w=1), tuned(210, 200, 220, w=2)),
               record("b", tuned(100, 90, 110, w=1), tuned(400, 380, 420, w=4))]
    assert ranking(records, "default") == [["a"], ["b"]] and ranking(records, "best") == [["b"], ["a"]]
    (line,) = ranking_verdict(records)
    assert "best against best b > a" in line and "defaults would have ranked differently (a > b" in line


def test_overlapping_intervals_tie_and_an_unchanged_order_is_said_so() -> None:
    records = [record("a", tuned(200, 150, 260), tuned(200, 150, 260)),
               record("b", tuned(210, 160, 250), tuned(210, 160, 250))]
    assert ranking(records, "best") == [["b", "a"]]
    assert ranking_verdict(records) == ["m: best against best b = a; the defaults rank the same"]


def probe(rate: float, p99: float, passed: bool = True) -> Cell:
    return Cell(cell_id=f"c{rate}", runtime="r", model="m", scenario="s", target="local", label=f"rate={rate}",
                load=LoadPoint(offered_rps=rate), latency=Latency(p99=p99), slo_met=passed,
                validity=Validity(valid=True))


def test_the_frontier_rate_is_one_the_default_passed_at_and_p99_is_read_there() -> None:
    default = [probe(50, 5.0), probe(100, 8.0), probe(200, 20.0), probe(400, 90.0, passed=False), probe(283, 45.0)]
    assert common_rate(default, capacity_rps=290.0) == 100  # the highest passing probe at or below 145
    assert common_rate([probe(50, 5.0)], capacity_rps=80.0) == 50  # none below half: the lowest that passed
    assert common_rate([], capacity_rps=80.0) == 40
    assert p99_at(default, 100) == 8.0
    assert p99_at(default, 141.4) == pytest.approx(8.0 * (20.0 / 8.0) ** 0.414, rel=1e-3)  # log-linear between
    assert p99_at(default, 20) is None and p99_at(default, 1000) is None  # never extrapolated
