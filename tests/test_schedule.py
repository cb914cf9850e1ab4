"""Open-loop arrival schedules: exact constant spacing, seeded Poisson statistics, worker partitioning."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from bench.load.schedule import (
    CONSTANT,
    POISSON,
    ArrivalProcess,
    RateStage,
    arrival_chunks,
    arrival_offsets,
    count_between,
    slots_for_worker,
    split_stages,
    worker_slots,
)
from bench.protocols import Array

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None


# ---- constant ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration_s", "rate", "count"),
    [(10.0, 100.0, 1000), (1.0, 1.0, 1), (2.5, 4.0, 10), (1.5, 10.0, 15), (0.25, 10.0, 2), (3.0, 7.0, 21),
     (0.999, 1.0, 0), (0.1, 3.0, 0),
     (4.35, 100.0, 435), (0.7, 10.0, 7), (0.3, 10.0, 3)],  # products a rounding error away from whole
)
def test_constant_count_is_floor_of_duration_times_rate(duration_s: float, rate: float, count: int) -> None:
    offsets = arrival_offsets([RateStage(duration_s, rate)], CONSTANT)
    assert len(offsets) == count


@pytest.mark.parametrize("rate", [1.0, 3.0, 7.0, 50.0, 1000.0])
def test_constant_spacing_is_exactly_one_over_rate_from_zero(rate: float) -> None:
    offsets = arrival_offsets([RateStage(4.0, rate)], CONSTANT)
    assert offsets[0] == 0.0
    np.testing.assert_allclose(offsets, np.arange(len(offsets)) / rate, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diff(offsets), 1.0 / rate, rtol=1e-9)
    assert offsets[-1] < 4.0


def test_constant_stages_concatenate_at_their_start_times() -> None:
    stages = [RateStage(2.0, 5.0), RateStage(1.0, 20.0), RateStage(0.5, 4.0)]
    offsets = arrival_offsets(stages, CONSTANT)
    expected = np.concatenate([
        np.arange(10) / 5.0,  # 0.0 .. 1.8
        2.0 + np.arange(20) / 20.0,  # 2.0 .. 2.95
        3.0 + np.arange(2) / 4.0,  # 3.0, 3.25
    ])
    np.testing.assert_allclose(offsets, expected, rtol=0, atol=1e-12)
    assert np.all(np.diff(offsets) > 0)


def test_constant_stage_with_fractional_count_does_not_shift_the_next_stage() -> None:
    # 0.25 s at 10/s holds 2 arrivals (0.0, 0.1); the next stage still starts at 0.25, not at 0.2.
    offsets = arrival_offsets([RateStage(0.25, 10.0), RateStage(1.0, 2.0)], CONSTANT)
    np.testing.assert_allclose(offsets, [0.0, 0.1, 0.25, 0.75], rtol=0, atol=1e-12)


def test_constant_ignores_the_seed() -> None:
    stages = [RateStage(3.0, 9.0)]
    np.testing.assert_array_equal(arrival_offsets(stages, CONSTANT, seed=1), arrival_offsets(stages, CONSTANT, 2))


def test_no_stages_gives_an_empty_schedule() -> None:
    for arrival in (CONSTANT, POISSON):
        offsets = arrival_offsets([], arrival)
        assert offsets.shape == (0,)


# ---- poisson -----------------------------------------------------------------------------------


def test_poisson_same_seed_same_schedule() -> None:
    stages = [RateStage(20.0, 50.0), RateStage(5.0, 300.0)]
    first = arrival_offsets(stages, POISSON, seed=7)
    second = arrival_offsets(stages, POISSON, seed=7)
    np.testing.assert_array_equal(first, second)


def test_poisson_different_seed_different_schedule() -> None:
    stages = [RateStage(20.0, 50.0)]
    first = arrival_offsets(stages, POISSON, seed=1)
    second = arrival_offsets(stages, POISSON, seed=2)
    assert len(first) != len(second) or not np.allclose(first, second)
    # not merely a shift or a reordering: the gaps themselves differ
    common = min(len(first), len(second))
    assert not np.allclose(np.diff(first[:common]), np.diff(second[:common]))


@pytest.fixture(scope="module")
def long_poisson() -> dict[str, Any]:
    rate, duration = 250.0, 800.0  # 200k expected arrivals
    offsets = arrival_offsets([RateStage(duration, rate)], POISSON, seed=12345)
    return {"rate": rate, "duration": duration, "offsets": offsets, "gaps": np.diff(offsets)}


def test_poisson_mean_rate_matches(long_poisson: dict[str, Any]) -> None:
    achieved = len(long_poisson["offsets"]) / long_poisson["duration"]
    assert achieved == pytest.approx(long_poisson["rate"], rel=0.02)


def test_poisson_gaps_are_exponential_in_mean_and_spread(long_poisson: dict[str, Any]) -> None:
    gaps = long_poisson["gaps"]
    mean = float(np.mean(gaps))
    assert mean == pytest.approx(1.0 / long_poisson["rate"], rel=0.02)
    cv = float(np.std(gaps)) / mean  # exponential: coefficient of variation 1 (constant would give 0)
    assert cv == pytest.approx(1.0, abs=0.03)
    # memoryless: the median gap of an exponential is ln 2 times the mean
    assert float(np.median(gaps)) / mean == pytest.approx(np.log(2), rel=0.03)
    assert np.all(gaps > 0)


def test_poisson_times_sorted_and_inside_the_stage(long_poisson: dict[str, Any]) -> None:
    offsets = long_poisson["offsets"]
    assert offsets[0] >= 0.0
    assert offsets[-1] < long_poisson["duration"]
    assert np.all(np.diff(offsets) > 0)


@pytest.mark.skipif(not HAVE_SCIPY, reason="scipy not installed in the venv")
def test_poisson_gaps_pass_kolmogorov_smirnov_against_exponential(long_poisson: dict[str, Any]) -> None:
    from scipy import stats  # type: ignore[import-untyped]

    gaps = long_poisson["gaps"]
    result = stats.kstest(gaps, "expon", args=(0, 1.0 / long_poisson["rate"]))
    assert result.pvalue > 0.001, result
    # the test has power: the same gaps are clearly not exponential at a 20% different rate
    wrong = stats.kstest(gaps, "expon", args=(0, 1.2 / long_poisson["rate"]))
    assert wrong.pvalue < 1e-6


def test_poisson_piecewise_stages_stay_inside_their_own_stage() -> None:
    stages = [RateStage(30.0, 50.0), RateStage(5.0, 2000.0), RateStage(40.0, 100.0)]
    offsets = arrival_offsets(stages, POISSON, seed=3)
    assert np.all(np.diff(offsets) > 0)
    assert offsets[0] >= 0.0 and offsets[-1] < 75.0
    bounds = [(0.0, 30.0, 50.0), (30.0, 35.0, 2000.0), (35.0, 75.0, 100.0)]
    for low, high, rate in bounds:
        inside = offsets[(offsets >= low) & (offsets < high)]
        expected = (high - low) * rate
        # Poisson count: standard deviation sqrt(expected); allow 5 of them
        assert abs(len(inside) - expected) < 5 * np.sqrt(expected) + 2, (low, high, len(inside))
    assert len(offsets[(offsets >= 0) & (offsets < 75.0)]) == len(offsets)


def test_poisson_extends_when_the_first_draw_falls_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 'astronomically rare' extension branch: force it with a generator whose gaps are a quarter
    of the mean, and check the extended schedule is contiguous and cut at the stage end."""

    class ShortGaps:
        calls = 0

        def exponential(self, scale: float, size: int) -> Array:
            self.calls += 1
            return np.full(size, scale / 4.0)

    fake = ShortGaps()
    monkeypatch.setattr(np.random, "default_rng", lambda seed: fake)  # the module uses np.random
    offsets = arrival_offsets([RateStage(10.0, 8.0)], POISSON, seed=0)
    assert fake.calls >= 2  # the extension really ran
    # gaps of 1/32 s (exact in binary), the first one too, up to but not including 10 s: 319 arrivals
    assert len(offsets) == 319
    np.testing.assert_array_equal(offsets, np.arange(1, 320) / 32.0)


# ---- invalid stages ----------------------------------------------------------------------------


@pytest.mark.parametrize("arrival", [CONSTANT, POISSON])
@pytest.mark.parametrize(("duration_s", "rate"), [(0.0, 10.0), (-1.0, 10.0), (5.0, 0.0), (5.0, -3.0)])
def test_invalid_stage_raises(arrival: ArrivalProcess, duration_s: float, rate: float) -> None:
    with pytest.raises(ValueError, match="positive duration and rate"):
        arrival_offsets([RateStage(duration_s, rate)], arrival)


def test_invalid_later_stage_raises_too() -> None:
    with pytest.raises(ValueError, match="positive"):
        arrival_offsets([RateStage(5.0, 10.0), RateStage(5.0, 0.0)], CONSTANT)


# ---- slots per worker --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("arrival", [CONSTANT, POISSON])
def test_slots_partition_the_schedule_exactly(workers: int, arrival: ArrivalProcess) -> None:
    offsets = arrival_offsets([RateStage(3.0, 37.0), RateStage(2.0, 11.0)], arrival, seed=5)
    slots = [slots_for_worker(offsets, w, workers) for w in range(workers)]
    # sizes differ by at most one and add up
    sizes = [len(s) for s in slots]
    assert sum(sizes) == len(offsets)
    assert max(sizes) - min(sizes) <= 1
    # union == schedule, each send time exactly once (offsets are distinct, so disjoint by value)
    merged = np.sort(np.concatenate(slots))
    np.testing.assert_array_equal(merged, offsets)
    for a in range(workers):
        for b in range(a + 1, workers):
            assert not set(slots[a].tolist()) & set(slots[b].tolist())
    # interleaved: the k-th slot of worker w is request k*P + w
    for w, mine in enumerate(slots):
        np.testing.assert_array_equal(mine, offsets[w + workers * np.arange(len(mine))])
        assert np.all(np.diff(mine) > 0)


def test_slots_interleave_small_example() -> None:
    offsets = np.arange(10, dtype=np.float64)
    assert slots_for_worker(offsets, 0, 3).tolist() == [0.0, 3.0, 6.0, 9.0]
    assert slots_for_worker(offsets, 1, 3).tolist() == [1.0, 4.0, 7.0]
    assert slots_for_worker(offsets, 2, 3).tolist() == [2.0, 5.0, 8.0]


@pytest.mark.parametrize(("worker", "workers"), [(-1, 3), (3, 3), (4, 3), (0, 0), (0, -1)])
def test_slots_bad_worker_index_raises(worker: int, workers: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        slots_for_worker(np.arange(10, dtype=np.float64), worker, workers)


# ---- lazily, a chunk at a time -----------------------------------------------------------------


@pytest.mark.parametrize("arrival", [CONSTANT, POISSON])
def test_the_schedule_does_not_depend_on_the_chunk_size(arrival: ArrivalProcess) -> None:
    stages = [RateStage(3.0, 200.0), RateStage(2.0, 1000.0), RateStage(1.5, 7.0)]
    whole = np.concatenate(list(arrival_chunks(stages, arrival, 11, chunk=10**9)))
    for chunk in (1, 7, 1000):
        chunked = np.concatenate(list(arrival_chunks(stages, arrival, 11, chunk=chunk)))
        assert np.array_equal(chunked, whole)  # bit for bit: every process and the harness agree
    assert np.array_equal(arrival_offsets(stages, arrival, 11), whole)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_worker_slots_interleave_the_whole_schedule_lazily(workers: int) -> None:
    stages = [RateStage(2.0, 500.0)]
    whole = arrival_offsets(stages, POISSON, 5)
    for worker in range(workers):
        lazily = list(worker_slots(stages, POISSON, 5, worker, workers, chunk=33))
        assert lazily == slots_for_worker(whole, worker, workers).tolist()


def test_count_between_counts_without_the_whole_schedule() -> None:
    stages = [RateStage(1.0, 50.0), RateStage(4.0, 300.0)]
    whole = arrival_offsets(stages, POISSON, 3)
    assert count_between(stages, POISSON, 3, 1.0, 5.0) == int(((whole >= 1.0) & (whole < 5.0)).sum())


def test_an_hour_at_a_high_rate_is_generated_in_bounded_memory() -> None:
    """18 million send times, never more than a chunk of them at once (tracemalloc's peak)."""
    import tracemalloc

    tracemalloc.start()
    total = sum(len(times) for times in arrival_chunks([RateStage(3600.0, 5000.0)], POISSON, 1))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert abs(total - 18_000_000) < 5 * np.sqrt(18_000_000)
    assert peak < 20 * 2**20, peak  # a 65,536-value chunk and its cumulative sum, not 144 MB


@pytest.mark.parametrize("arrival", [CONSTANT, POISSON])
def test_the_window_holds_the_same_arrivals_whatever_the_warm_up(arrival: ArrivalProcess) -> None:
    """Two runtimes at one load point and seed, one warmed up 1 s and one 5 s (a runtime.yaml's warmup_s):
    the same scheduled count and the same arrival offsets within the window."""
    window_s, rate = 15.0, 50.0
    windows = []
    for warmup_s in (1.0, 5.0):
        offsets = arrival_offsets([RateStage(warmup_s + window_s, rate)], arrival, seed=7,
                                  warmup_s=warmup_s)
        windows.append(offsets[offsets >= warmup_s] - warmup_s)
        assert (offsets < warmup_s).sum() > 0  # the warm-up has arrivals of its own
    assert len(windows[0]) == len(windows[1]) > 0.5 * window_s * rate
    np.testing.assert_allclose(windows[0], windows[1], atol=1e-9)


def test_the_warm_up_is_another_draw_than_the_window() -> None:
    stages = [RateStage(10.0, 50.0)]
    offsets = arrival_offsets(stages, POISSON, seed=3, warmup_s=5.0)
    warm, window = offsets[offsets < 5.0], offsets[offsets >= 5.0] - 5.0
    assert not np.allclose(warm[:10], window[:10])
    assert np.all(np.diff(offsets) >= 0)  # one ordered schedule


def test_stages_split_at_the_warm_up() -> None:
    warm, window = split_stages([RateStage(3.0, 10.0), RateStage(4.0, 20.0)], 5.0)
    assert warm == [RateStage(3.0, 10.0), RateStage(2.0, 20.0)] and window == [RateStage(2.0, 20.0)]
    assert split_stages([RateStage(3.0, 10.0)], 0.0) == ([], [RateStage(3.0, 10.0)])


def test_count_between_agrees_with_the_split_schedule() -> None:
    stages = [RateStage(12.0, 40.0)]
    whole = arrival_offsets(stages, POISSON, 9, warmup_s=2.0)
    assert count_between(stages, POISSON, 9, 2.0, 12.0, warmup_s=2.0) == int((whole >= 2.0).sum())
    slots = sorted(s for w in range(3) for s in worker_slots(stages, POISSON, 9, w, 3, warmup_s=2.0))
    np.testing.assert_array_equal(np.array(slots), whole)
