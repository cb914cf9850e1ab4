"""`bench compare` and `bench baseline save`: the statistics on synthetic samples with known answers, then
sides built from the saved runs in tests/data/runs and variations of them (a slowdown, a changed
environment, missing and invalid cells, newer schemas, baseline files on either side), then the CLI's
exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report_runs import materialise, read, with_bad_cells, write

from bench.cli import main
from bench.compare.bootstrap import resample_latency
from bench.compare.gate import (
    BETTER,
    DEFAULT_THRESHOLDS,
    INVALID,
    MISSING,
    NOT_COMPARABLE,
    UNCHANGED,
    WORSE,
    Comparison,
    MetricResult,
    compare,
    parse_thresholds,
)
from bench.compare.render import render
from bench.compare.side import CellData, Fingerprint, Side, load_side
from bench.errors import BenchError
from bench.results.baseline import BASELINE_SCHEMA_VERSION, MAX_KEPT, Figures, reduce_samples, save_baseline
from bench.results.schema import SCHEMA_VERSION
from bench.stats import latency_summary

RUNTIMES = ("bentoml", "fastapi", "mlflow", "mlserver")
KEY = ("fastapi", "iris-logreg", "smoke", "local", 1, "rate=50")
FINGERPRINT = Fingerprint("Test CPU", {"fastapi": "1.0"}, "abc")
BENCH = Path(sys.executable).with_name("bench")


# ---- synthetic samples ---------------------------------------------------------------------------


def sample_frame(latency_ms: np.ndarray[Any, Any], rate: float, start: float = 1_000.0) -> pd.DataFrame:
    """An open-loop sample table: request k scheduled (and sent) at start + k / rate, all successful."""
    scheduled = start + np.arange(len(latency_ms)) / rate
    return pd.DataFrame({"scheduled": scheduled, "sent": scheduled, "latency_ms": latency_ms,
                         "service_ms": latency_ms, "status": 200, "in_window": True})


_SEQUENTIAL_STARTS = iter(range(1_000_000, 10**9, 10_000))


def synthetic_cell(latency_ms: np.ndarray[Any, Any], rate: float = 50.0, valid: bool = True,
                   start: float | None = None) -> CellData:
    """A cell measured from `start`; by default each cell gets its own hour, as runs made one after the
    other (cells given the same start were measured side by side)."""
    duration = len(latency_ms) / rate
    at = float(next(_SEQUENTIAL_STARTS)) if start is None else start
    samples = reduce_samples(sample_frame(latency_ms, rate, at), duration)
    figures = Figures(**latency_summary(latency_ms).model_dump(), throughput=len(latency_ms) / duration)
    return CellData(KEY, valid, [] if valid else ["too few requests"], len(latency_ms), figures, samples)


def side(*cells: CellData, fingerprint: Fingerprint = FINGERPRINT) -> Side:
    return Side(Path("synthetic"), "run", "synthetic", "complete", None, {"fastapi": fingerprint},
                {cell.key: cell for cell in cells})


def lognormal(seed: int, n: int = 1000, median_ms: float = 2.0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).lognormal(np.log(median_ms), 0.25, n)


def metric(comparison: Comparison, name: str, key: tuple[Any, ...] = KEY) -> MetricResult:
    cell = next(c for c in comparison.cells if c.key == key)
    return next(m for m in cell.metrics if m.metric == name)


def test_identical_distributions_are_unchanged() -> None:
    """Ten pairs of runs drawn from one distribution: every verdict unchanged; a 95% interval excludes zero
    about one time in twenty (here 1 of 30), never by as much as the threshold."""
    excluding_zero = 0
    for seed in range(10, 30, 2):
        result = compare(side(synthetic_cell(lognormal(seed))), side(synthetic_cell(lognormal(seed + 1))))
        assert result.status == "pass" and result.exit_code == 0
        for name in ("p50", "p99", "throughput"):
            found = metric(result, name)
            assert found.verdict == UNCHANGED, found
            assert found.ci is not None
            excluding_zero += found.ci[0] > 0 or found.ci[1] < 0
    assert excluding_zero <= 3


def test_a_30_percent_slowdown_is_worse_and_significant() -> None:
    result = compare(side(synthetic_cell(lognormal(1))), side(synthetic_cell(lognormal(2) * 1.3)))
    p50 = metric(result, "p50")
    assert p50.verdict == WORSE and p50.change == pytest.approx(0.3, abs=0.05)
    assert p50.ci is not None and p50.ci[0] > DEFAULT_THRESHOLDS["p50"]  # beyond the threshold, significantly
    assert result.status == "regression" and result.exit_code == 1
    assert "fastapi x iris-logreg smoke rate=50 p50 +" in result.headline()


def test_a_30_percent_speed_up_is_better_and_passes() -> None:
    result = compare(side(synthetic_cell(lognormal(1))), side(synthetic_cell(lognormal(2) / 1.3)))
    assert metric(result, "p50").verdict == BETTER
    assert result.exit_code == 0


def test_a_small_significant_shift_under_the_threshold_is_unchanged() -> None:
    base, cur = lognormal(1, n=4000, median_ms=2.0), lognormal(2, n=4000, median_ms=2.0) * 1.05
    result = compare(side(synthetic_cell(base, rate=100.0)), side(synthetic_cell(cur, rate=100.0)))
    p50 = metric(result, "p50")
    assert p50.ci is not None and p50.ci[0] > 0  # significant...
    assert p50.verdict == UNCHANGED and p50.note == "significant, within the threshold"  # ...but small
    assert result.exit_code == 0


def drifting(seed: int, seconds: int = 5, rate: int = 50, median_ms: float = 2.0,
             drift: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
    """Requests at `rate` per second whose median follows the machine: second k is slower by drift[k]."""
    factors = np.ones(seconds) if drift is None else drift
    return lognormal(seed, n=seconds * rate, median_ms=median_ms) * np.repeat(factors, rate)


MACHINE_DRIFT = np.array([1.0, 1.25, 0.8, 1.35, 0.9])  # per-second speed of a busy shared VM


def test_side_by_side_runs_share_the_drift_and_a_paired_test_sees_through_it() -> None:
    """Two runs measured at the same time see the same machine: resampling the same seconds on both sides
    keeps that common drift out of the interval, so a 25% slowdown is detected side by side, while the
    same samples treated as runs made at different times give an interval too wide to call it."""
    base, slow = drifting(1, drift=MACHINE_DRIFT), drifting(2, drift=MACHINE_DRIFT) * 1.25
    paired = metric(compare(side(synthetic_cell(base, start=5_000.0)), side(synthetic_cell(slow, start=5_000.2))),
                    "p50")
    apart = metric(compare(side(synthetic_cell(base)), side(synthetic_cell(slow))), "p50")
    assert paired.test.startswith("paired block bootstrap (side by side), 5 common s")
    assert apart.test.startswith("block bootstrap, 5+5 s")
    assert paired.ci is not None and apart.ci is not None
    assert paired.ci[1] - paired.ci[0] < 0.5 * (apart.ci[1] - apart.ci[0])
    assert paired.verdict == WORSE and apart.verdict == UNCHANGED


def test_side_by_side_runs_with_nothing_changed_are_unchanged() -> None:
    for seed in range(40, 50, 2):
        result = compare(side(synthetic_cell(drifting(seed, drift=MACHINE_DRIFT), start=5_000.0)),
                         side(synthetic_cell(drifting(seed + 1, drift=MACHINE_DRIFT), start=5_000.0)))
        assert result.exit_code == 0
        assert all(m.verdict == UNCHANGED and m.test.startswith("paired") for m in result.cells[0].metrics)


def test_side_by_side_runs_are_aligned_on_wall_clock_seconds() -> None:
    """A run that started 2 s after the other shares 8 of its 10 seconds with it: those are compared."""
    base = synthetic_cell(drifting(1, seconds=10), start=7_000.0)
    late = synthetic_cell(drifting(2, seconds=10), start=7_002.1)
    result = compare(side(base), side(late))
    assert metric(result, "p50").test.startswith("paired block bootstrap (side by side), 8 common s")
    assert metric(result, "throughput").test == "paired block bootstrap (side by side), 8 common s"
    barely = synthetic_cell(drifting(3, seconds=10), start=7_008.0)  # 2 common seconds: too few to pair
    assert metric(compare(side(base), side(barely)), "p50").test.startswith("block bootstrap, 10+10 s")


def test_a_big_change_from_one_stall_is_not_significant() -> None:
    """A 300 ms freeze in one second of 20 delays the ~15 requests scheduled during it: p99 grows
    tenfold, but it is one event, and the block bootstrap says so even at a tight p99:20%. A bootstrap
    of single requests (one block per request) would call it a significant regression beyond 20%."""
    stalled = lognormal(2)
    stalled[200:215] += np.linspace(300.0, 20.0, 15)  # queued behind the freeze, drained afterwards
    result = compare(side(synthetic_cell(lognormal(1))), side(synthetic_cell(stalled)), parse_thresholds(["p99:20"]))
    p99 = metric(result, "p99")
    assert p99.change is not None and p99.change > 5.0
    assert p99.verdict == UNCHANGED and p99.note == "beyond the threshold, but not significantly"
    assert p99.ci is not None and p99.ci[0] < 0.2
    assert metric(result, "p50").verdict == UNCHANGED
    assert result.exit_code == 0

    rng = np.random.default_rng(0)
    per_request = resample_latency([np.array([v]) for v in lognormal(1)], rng)[:, 3]
    per_request_stalled = resample_latency([np.array([v]) for v in stalled], rng)[:, 3]
    assert np.percentile(per_request_stalled / per_request - 1, 2.5) > 0.2


def test_a_tail_regression_in_every_second_is_worse() -> None:
    slow = lognormal(2)
    slow[::40] += 40.0  # a slow request in every second of the run
    result = compare(side(synthetic_cell(lognormal(1))), side(synthetic_cell(slow)))
    assert metric(result, "p99").verdict == WORSE
    assert metric(result, "p50").verdict == UNCHANGED


def test_throughput_drop_is_judged_on_completions_per_second() -> None:
    base = synthetic_cell(lognormal(1, n=1000), rate=50.0)
    cur = synthetic_cell(lognormal(2, n=700), rate=35.0)
    result = compare(side(base), side(cur))
    throughput = metric(result, "throughput")
    assert throughput.verdict == WORSE and throughput.change == pytest.approx(-0.3)
    assert throughput.test == "block bootstrap, 20+20 s"


def test_verdicts_are_deterministic() -> None:
    first = compare(side(synthetic_cell(lognormal(1))), side(synthetic_cell(lognormal(2) * 1.1)))
    second = compare(side(synthetic_cell(lognormal(1))), side(synthetic_cell(lognormal(2) * 1.1)))
    assert render(first, "json") == render(second, "json")


def test_too_few_seconds_cannot_be_tested() -> None:
    result = compare(side(synthetic_cell(lognormal(1, n=100))), side(synthetic_cell(lognormal(2, n=100))))
    assert metric(result, "p50").verdict == NOT_COMPARABLE  # two seconds at 50 req/s
    assert "too few to test" in metric(result, "p50").note
    assert result.exit_code == 2


def test_reduce_samples_keeps_successful_in_window_requests_by_second() -> None:
    frame = sample_frame(np.full(6000, 2.0), rate=1000.0)
    frame.loc[:999, "in_window"] = False  # one second of warm-up
    frame.loc[1000:1009, "status"] = 503
    samples = reduce_samples(frame, duration_s=5.0)
    assert samples is not None
    assert samples.successful == 4990 and samples.kept == MAX_KEPT
    assert len(samples.latency_us) == 5 and all(300 < len(block) < 500 for block in samples.latency_us)
    assert set(np.concatenate(samples.latency_us).tolist()) == {2000}  # microseconds
    # completions at scheduled + 2 ms: each second hands its last two to the next; ten errors in the first
    assert samples.completed_per_s.tolist() == [988, 1000, 1000, 1000, 1000]
    again = reduce_samples(frame, duration_s=5.0)
    assert again is not None and all(np.array_equal(a, b) for a, b in zip(samples.latency_us, again.latency_us,
                                                                          strict=True))


# ---- thresholds ----------------------------------------------------------------------------------


def test_thresholds_default_and_override_metric_by_metric() -> None:
    assert parse_thresholds([]) == {"p50": 0.10, "p99": 0.50, "throughput": -0.10}
    assert parse_thresholds(["p99:10%", "throughput:-5%", "P999:+50", "mean:0"]) == {
        "p50": 0.10, "p99": 0.10, "p999": 0.50, "mean": 0.0, "throughput": -0.05}


@pytest.mark.parametrize(("spec", "says"), [("p42:10%", "unknown metric 'p42'"), ("p99", "expected METRIC:PCT"),
                                            ("p99:ten", "expected METRIC:PCT"),
                                            ("p99:-10%", "regresses when it rises"),
                                            ("throughput:10%", "regresses when it falls")])
def test_bad_thresholds_are_user_errors(spec: str, says: str) -> None:
    with pytest.raises(BenchError, match=says):
        parse_thresholds([spec])


# ---- sides from saved runs -----------------------------------------------------------------------


@pytest.fixture
def smoke(tmp_path: Path) -> Path:
    return materialise("smoke-4runtimes", tmp_path / "smoke")


def slowed(dest: Path, runtime: str, factor: float) -> Path:
    """The 4-runtime smoke run, with one runtime answering `factor` times slower, in samples and figures."""
    folder = materialise("smoke-4runtimes", dest)
    payload = read(folder)
    cell = next(c for c in payload["cells"] if c["runtime"] == runtime)
    cell["latency_ms"] = {k: v * factor for k, v in cell["latency_ms"].items()}
    path = folder / cell["samples_file"]
    frame = pd.read_parquet(path)
    frame[["latency_ms", "service_ms"]] *= factor
    frame.to_parquet(path, index=False)
    write(folder, payload)
    return folder


def edit(run: Path, change: Any) -> Path:
    payload = read(run)
    change(payload)
    write(run, payload)
    return run


def test_a_run_against_itself_passes(smoke: Path) -> None:
    result = compare(load_side(smoke), load_side(smoke / "results.json"))
    assert [cell.verdict for cell in result.cells] == [UNCHANGED] * 4
    assert result.exit_code == 0
    assert all(m.change == 0.0 for cell in result.cells for m in cell.metrics)


def test_a_slowed_runtime_is_a_regression(smoke: Path, tmp_path: Path) -> None:
    current = slowed(tmp_path / "slow", "fastapi", 1.3)
    result = compare(load_side(smoke), load_side(current))
    verdicts = {cell.key[0]: cell.verdict for cell in result.cells}
    assert verdicts == {"bentoml": UNCHANGED, "fastapi": WORSE, "mlflow": UNCHANGED, "mlserver": UNCHANGED}
    assert metric(result, "p50").change == pytest.approx(0.3)


def test_a_baseline_file_on_either_side_gives_the_same_verdicts(smoke: Path, tmp_path: Path) -> None:
    current = slowed(tmp_path / "slow", "fastapi", 1.3)
    baseline = save_baseline(smoke, tmp_path / "baselines" / "main.json")
    as_run = compare(load_side(smoke), load_side(current))
    as_file = compare(load_side(baseline), load_side(current))
    assert [(c.key, c.verdict, c.metrics) for c in as_file.cells] == \
        [(c.key, c.verdict, c.metrics) for c in as_run.cells]
    reverse_run = compare(load_side(current), load_side(smoke))
    reverse_file = compare(load_side(current), load_side(baseline))
    assert [c.metrics for c in reverse_file.cells] == [c.metrics for c in reverse_run.cells]
    assert metric(reverse_file, "p50").verdict == BETTER
    both = compare(load_side(baseline), load_side(baseline))
    assert both.exit_code == 0


def test_baseline_file_is_compact_and_versioned(smoke: Path, tmp_path: Path) -> None:
    """Under 1 MB for four runtimes even when each cell measured 20000 requests (latencies subsampled)."""
    for path in (smoke / "samples").glob("*.parquet"):
        big = sample_frame(np.random.default_rng(0).lognormal(0.5, 0.3, 20_000), rate=1000.0)
        big.to_parquet(path, index=False)
    baseline = save_baseline(smoke, tmp_path / "main.json")
    payload = json.loads(baseline.read_text())
    assert baseline.stat().st_size < 1_000_000
    assert payload["kind"] == "servebench-baseline" and payload["schema_version"] == BASELINE_SCHEMA_VERSION
    assert [c["samples"]["kept"] for c in payload["cells"]] == [MAX_KEPT] * 4
    assert set(payload["fingerprints"]) == set(RUNTIMES)
    assert payload["fingerprints"]["fastapi"]["cpu_model"] == "Intel(R) Xeon(R) Processor"
    assert len(payload["scenario_sha256"]) == 64


def test_a_baseline_keeps_when_it_was_measured_and_older_files_compare_unpaired(smoke: Path,
                                                                               tmp_path: Path) -> None:
    """start_s tells `bench compare` whether two measurements were side by side; a baseline written
    before it was kept still reads, and is compared as a run made at another time."""
    current = slowed(tmp_path / "slow", "fastapi", 1.3)  # a copy of the smoke run: the same seconds
    baseline = save_baseline(smoke, tmp_path / "main.json")
    payload = json.loads(baseline.read_text())
    assert all(isinstance(cell["samples"]["start_s"], float) for cell in payload["cells"])
    assert metric(compare(load_side(baseline), load_side(current)), "p50").test.startswith("paired")
    for cell in payload["cells"]:
        del cell["samples"]["start_s"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(payload))
    p50 = metric(compare(load_side(older), load_side(current)), "p50")
    assert p50.test.startswith("block bootstrap, ") and p50.verdict == WORSE


def test_the_real_smoke_baseline_is_small(smoke: Path, tmp_path: Path) -> None:
    baseline = save_baseline(smoke, tmp_path / "main.json")
    assert baseline.stat().st_size < 100_000
    assert [c["samples"]["kept"] for c in json.loads(baseline.read_text())["cells"]] == [625, 625, 625, 624]


@pytest.mark.parametrize("kind", ["results", "baseline"])
def test_a_newer_schema_is_refused(smoke: Path, tmp_path: Path, kind: str) -> None:
    path = smoke if kind == "results" else save_baseline(smoke, tmp_path / "main.json")
    file = path / "results.json" if kind == "results" else path
    payload = json.loads(file.read_text())
    payload["schema_version"] = 99
    file.write_text(json.dumps(payload))
    with pytest.raises(BenchError, match="schema version 99 is newer than this servebench"):
        load_side(path)


@pytest.mark.parametrize(("change", "says"), [
    (lambda p: p["environment"].update(cpu_model="AMD EPYC 7763"),
     "CPU model 'Intel(R) Xeon(R) Processor' -> 'AMD EPYC 7763'"),
    (lambda p: p["environment"]["runtime_packages"]["fastapi"].update(starlette="9.9.9"),
     "runtime packages changed: starlette 1.10.0 -> 9.9.9"),
    (lambda p: p["scenario"].update(rate=60.0), "scenario or run length definition changed"),
    (lambda p: p["environment"].pop("runtime_packages"), "runtime package versions not recorded in the current run"),
], ids=["cpu", "packages", "scenario", "unrecorded"])
def test_a_changed_environment_is_not_comparable(smoke: Path, tmp_path: Path, change: Any, says: str) -> None:
    current = edit(materialise("smoke-4runtimes", tmp_path / "other"), change)
    result = compare(load_side(smoke), load_side(current))
    changed = [cell for cell in result.cells if cell.verdict == NOT_COMPARABLE]
    assert changed and all(says in cell.notes[0] for cell in changed)
    assert not any(cell.metrics for cell in changed)
    assert result.status == "undetermined" and result.exit_code == 2
    assert says in render(result, "text")

    allowed = compare(load_side(smoke), load_side(current), allow_env_change=True)
    assert allowed.exit_code == 0
    assert all(cell.metrics and cell.notes[0].startswith("environment differs (allowed)") for cell in allowed.cells
               if cell.key in {c.key for c in changed})


def test_the_scenario_description_is_not_part_of_the_fingerprint(smoke: Path, tmp_path: Path) -> None:
    current = edit(materialise("smoke-4runtimes", tmp_path / "other"),
                   lambda p: p["scenario"].update(description="reworded"))
    assert compare(load_side(smoke), load_side(current)).exit_code == 0


def test_another_arrival_seed_is_another_load(smoke: Path, tmp_path: Path) -> None:
    """`bench run --seed` draws another Poisson schedule: not the same measurement, so not comparable."""
    current = edit(materialise("smoke-4runtimes", tmp_path / "other"), lambda p: p["scenario"].update(seed=2))
    result = compare(load_side(smoke), load_side(current))
    assert result.exit_code == 2 and all(cell.verdict == NOT_COMPARABLE for cell in result.cells)
    assert "scenario or run length definition changed" in result.cells[0].notes[0]


def test_a_cell_missing_on_one_side_is_reported(smoke: Path, tmp_path: Path) -> None:
    fewer = edit(materialise("smoke-4runtimes", tmp_path / "fewer"),
                 lambda p: p.update(cells=[c for c in p["cells"] if c["runtime"] != "mlserver"]))
    for baseline, current, where in ((smoke, fewer, "current run"), (fewer, smoke, "baseline")):
        result = compare(load_side(baseline), load_side(current))
        missing = [cell for cell in result.cells if cell.verdict == MISSING]
        assert [cell.key[0] for cell in missing] == ["mlserver"]
        assert missing[0].notes == [f"not in the {where}"]
        assert result.exit_code == 0  # a run of fewer runtimes is allowed: the others are judged
    nothing = compare(load_side(smoke), load_side(edit(fewer, lambda p: p.update(cells=[]))))
    assert nothing.exit_code == 2 and nothing.headline() == "undetermined: no cell is in both runs"


def test_invalid_cells_are_reported_not_compared(smoke: Path, tmp_path: Path) -> None:
    result = compare(load_side(smoke), load_side(with_bad_cells(tmp_path / "bad")))
    verdicts = {cell.key[0]: cell for cell in result.cells}
    assert {name: cell.verdict for name, cell in verdicts.items()} == {
        "bentoml": INVALID, "fastapi": UNCHANGED, "mlflow": INVALID, "mlserver": INVALID}
    assert verdicts["bentoml"].notes == ["current invalid: 80 requests, fewer than the minimum 100; achieved 31.0 "
                                         "req/s, below 95% of the offered 50.0"]
    assert not verdicts["mlflow"].metrics
    assert result.exit_code == 2
    assert "current invalid: parity check failed" in render(result, "md")


def test_a_baseline_of_an_interrupted_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="the run is interrupted"):
        save_baseline(with_bad_cells(tmp_path / "bad"), tmp_path / "main.json")


def test_missing_raw_samples_make_metrics_not_comparable(smoke: Path, tmp_path: Path) -> None:
    (smoke / "samples" / "002-fastapi-iris-logreg-rate-50.parquet").unlink()
    result = compare(load_side(smoke), load_side(materialise("smoke-4runtimes", tmp_path / "other")))
    p50 = metric(result, "p50")
    assert p50.verdict == NOT_COMPARABLE and p50.note == "baseline: raw samples not readable (FileNotFoundError)"
    assert result.exit_code == 2


# ---- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() sets environment variables and a SIGTERM handler for the whole process: undo them."""
    for name in ("MLFLOW_LOGGING_LEVEL", "GIT_PYTHON_REFRESH", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, str, str]:
    try:
        code: Any = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("cli")
def test_cli_exit_codes(smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = slowed(tmp_path / "slow", "fastapi", 1.3)

    code, out, err = run_cli(["compare", str(smoke), str(smoke)], capsys)
    assert (code, err) == (0, "") and out.startswith("bench compare: pass: nothing regressed (4 unchanged)")

    code, out, err = run_cli(["compare", str(smoke), str(slow), "--format", "md"], capsys)
    assert code == 1 and err == ""
    assert out.startswith("### ❌ Serving latency gate: REGRESSION: fastapi x iris-logreg smoke rate=50 p50 +30.0%")
    assert "| fastapi | iris-logreg | smoke rate=50 | p50 | 1.48 ms | 1.92 ms | +30.0% |" in out
    assert "**worse**" in out

    code, out, _ = run_cli(["compare", str(smoke), str(slow), "--fail-on", "p50:40%", "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["exit_code"] == 0 and report["thresholds"]["p50"] == 0.4


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize(("argv", "says"), [
    (["compare", "a", "b", "--fail-on", "p42:10%"], "unknown metric 'p42'"),
    (["compare", "/nonexistent/run", "b"], "no results at /nonexistent/run"),
    (["compare", "a", "b", "--format", "html"], "invalid choice: 'html'"),
    (["baseline", "save", "/nonexistent/run", "x.json"], "no results at /nonexistent/run"),
    (["baseline"], "required: baseline_command"),
])
def test_cli_bad_input_is_exit_2_in_one_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and says in err and "(hint: " in err
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("cli")
def test_cli_schema_too_new_is_exit_2(smoke: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(smoke, lambda p: p.update(schema_version=SCHEMA_VERSION + 1))
    code, out, err = run_cli(["compare", str(smoke), str(smoke)], capsys)
    newer = f"schema version {SCHEMA_VERSION + 1} is newer than this servebench ({SCHEMA_VERSION})"
    assert code == 2 and out == "" and newer in err


@pytest.mark.usefixtures("cli")
def test_cli_not_comparable_shows_the_table_then_exits_2(smoke: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    other = edit(materialise("smoke-4runtimes", tmp_path / "other"),
                 lambda p: p["environment"].update(cpu_model="AMD EPYC 7763"))
    code, out, err = run_cli(["compare", str(smoke), str(other)], capsys)
    assert code == 2
    assert out.count("not comparable") >= 4 and "CPU model" in out
    assert err.startswith("error: undetermined: some cells could not be judged (4 not comparable)")
    assert "--allow-env-change" in err and len(err.splitlines()) == 1

    code, out, err = run_cli(["compare", str(smoke), str(other), "--allow-env-change"], capsys)
    assert (code, err) == (0, "") and "environment differs (allowed): CPU model" in out


@pytest.mark.usefixtures("cli")
def test_cli_baseline_save_then_compare(smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "baselines" / "main.json"
    code, out, _ = run_cli(["baseline", "save", str(smoke), str(target)], capsys)
    assert code == 0 and out.startswith(f"baseline: {target} (") and target.is_file()
    code, out, _ = run_cli(["compare", str(target), str(smoke)], capsys)
    assert code == 0 and "(baseline 20261125-121208-smoke-quick-cb1a, git bfc030addeff)" in out
    code, _, err = run_cli(["baseline", "save", str(target), str(tmp_path / "again.json")], capsys)
    assert code == 2 and "is already a baseline file" in err


def test_console_script_exit_codes(smoke: Path, tmp_path: Path) -> None:
    """The installed `bench` command, as CI calls it."""
    slow = slowed(tmp_path / "slow", "fastapi", 1.3)
    env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
    codes = [subprocess.run([str(BENCH), "compare", str(smoke), str(current)], env=env, capture_output=True,
                            timeout=120, check=False).returncode for current in (smoke, slow)]
    assert codes == [0, 1]
