"""Statistics in bounded memory: exact order statistics from sorted runs, the external merge of generator
files, and summaries, baselines and figures read in batches agreeing with the same figures held whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.results.sample_file as sample_file
from bench.order_statistics import SortedRuns
from bench.results.baseline import reduce_samples
from bench.results.sample_file import FrameSamples, ParquetSamples, merge_generator_files
from bench.results.samples import DROPPED, DROPPED_ROW, SAMPLE_COLUMNS, SAMPLE_ROW
from bench.stats import Limits, Window, per_second, summarize

LEVELS = [0.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]


@pytest.mark.parametrize("count", [1, 2, 3, 17, 1_000, 4_099])
@pytest.mark.parametrize("chunk", [1, 64, 1_000_000])
def test_sorted_runs_give_numpys_percentiles_to_the_last_bit(count: int, chunk: int) -> None:
    rng = np.random.default_rng(count)
    values = np.concatenate([rng.lognormal(1.0, 2.0, count // 2), -rng.exponential(size=count - count // 2)])
    with SortedRuns(chunk_values=chunk) as runs:
        for part in np.array_split(values, 5):
            runs.add(part)
        assert runs.count == count
        assert runs.percentiles(LEVELS) == [float(v) for v in np.percentile(values, LEVELS)]
        assert runs.maximum() == values.max()
        assert runs.mean == pytest.approx(values.mean(), rel=1e-12)
        ranks = rng.integers(0, count, size=20)
        assert list(runs.select(ranks)) == list(np.sort(values)[ranks])


def test_sorted_runs_skip_nans_and_refuse_ranks_outside() -> None:
    with SortedRuns(chunk_values=2) as runs:
        runs.add(np.array([3.0, np.nan, 1.0, 2.0, np.nan]))
        assert runs.count == 3
        assert list(runs.select([0, 1, 2])) == [1.0, 2.0, 3.0]
        with pytest.raises(IndexError):
            runs.select([3])


def test_sorted_runs_remove_their_files(tmp_path: Path) -> None:
    with SortedRuns(tmp_path, chunk_values=4) as runs:
        runs.add(np.arange(20.0))
        assert runs.percentiles([50.0]) == [9.5]
        assert any(tmp_path.rglob("*.u64"))
    assert not any(tmp_path.iterdir())


def _generator_rows(rng: np.random.Generator, count: int, worker: int) -> pd.DataFrame:
    """Rows as one generator process appends them: in completion order, not scheduled order."""
    scheduled = 1_000.0 + np.sort(rng.uniform(0, 20, count))
    latency = rng.exponential(30.0, count)
    status = np.where(rng.random(count) < 0.05, 500, 200)
    status[rng.random(count) < 0.03] = DROPPED
    sent = np.where(status == DROPPED, np.nan, scheduled + rng.exponential(0.002, count))
    frame = pd.DataFrame({"scheduled": scheduled, "sent": sent, "latency_ms": latency,
                          "service_ms": np.where(status == DROPPED, np.nan, latency * 0.9),
                          "status": status, "bytes": 40, "worker": worker,
                          "queued": (rng.random(count) < 0.1).astype(int)})
    return frame.iloc[np.argsort(scheduled + latency / 1000.0, kind="stable")][SAMPLE_COLUMNS]


def _write_generator_files(folder: Path, rng: np.random.Generator, sizes: list[int]) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for worker, size in enumerate(sizes):
        frame = _generator_rows(rng, size, worker)
        frame.to_csv(folder / f"samples-{worker}.csv", header=False, index=False)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches and sort runs of a few hundred rows, so a test-sized cell crosses every boundary."""
    monkeypatch.setattr(sample_file, "BATCH_ROWS", 97)
    monkeypatch.setattr(sample_file, "SORT_RUN_ROWS", 500)
    monkeypatch.setattr(sample_file, "MIN_MERGE_ROWS", 7)


def test_the_merge_sorts_every_row_of_every_generator_file(tmp_path: Path, small_batches: None) -> None:
    rows = _write_generator_files(tmp_path / "load", np.random.default_rng(1), [1_500, 1_100, 0, 700])
    with (tmp_path / "load" / "samples-1.csv").open("a") as torn:
        torn.write("1001.5,1001.5,3.0,")  # a line cut by a kill: skipped, not read with a wrong status
    merged = merge_generator_files(tmp_path / "load", tmp_path / "load" / "samples.parquet", (1_005.0, 1_015.0))
    frame = merged.whole()
    assert len(frame) == len(rows) == merged.rows
    assert frame["scheduled"].is_monotonic_increasing
    expected = rows.sort_values("scheduled", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame[SAMPLE_COLUMNS], expected, check_dtype=False)
    inside = (expected["scheduled"] >= 1_005.0 - 1e-6) & (expected["scheduled"] < 1_015.0 - 1e-6)
    assert frame["in_window"].tolist() == inside.tolist()
    assert [p.name for p in (tmp_path / "load").iterdir() if not p.name.startswith("samples-")] == ["samples.parquet"]


def test_the_merge_of_no_rows_is_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "samples-0.csv").write_text("")
    merged = merge_generator_files(tmp_path / "load", tmp_path / "samples.parquet")
    assert merged.rows == 0
    assert summarize(merged, Window(0.0, 1.0), Limits(slo_ms=10.0), None).counts.scheduled == 0


def test_a_summary_read_in_batches_equals_the_summary_held_whole(tmp_path: Path, small_batches: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _write_generator_files(tmp_path / "load", np.random.default_rng(2), [2_000, 1_300])
    window = Window(1_004.0, 1_018.0)
    merged = merge_generator_files(tmp_path / "load", tmp_path / "cell.parquet", (window.start, window.end))
    limits = Limits(slo_ms=40.0)
    streamed = summarize(merged, window, limits, 160.0)
    whole = summarize(FrameSamples(rows.sort_values("scheduled", kind="stable").reset_index(drop=True)),
                      window, limits, 160.0)
    monkeypatch.setattr(sample_file, "BATCH_ROWS", 1_000_000)  # one batch: the reference
    reference = summarize(rows, window, limits, 160.0)
    for other in (whole, reference):
        assert streamed.counts == other.counts
        assert streamed.latency.model_dump(exclude={"mean"}) == other.latency.model_dump(exclude={"mean"})
        assert streamed.latency.mean == pytest.approx(other.latency.mean, rel=1e-12)
        assert streamed.latency_ci == other.latency_ci
        assert streamed.timeseries == other.timeseries
        assert (streamed.throughput_rps, streamed.achieved_rps, streamed.goodput_rps, streamed.measured_s) == \
            (other.throughput_rps, other.achieved_rps, other.goodput_rps, other.measured_s)
    inside = rows[(rows["scheduled"] >= window.start) & (rows["scheduled"] < window.end)]
    assert streamed.counts.scheduled == len(inside)
    assert streamed.latency.p99 == float(np.percentile(inside["latency_ms"], 99))
    ok = inside[inside["status"] == 200]
    assert streamed.service.p50 == float(np.percentile(ok["service_ms"], 50))
    assert [s.requests for s in streamed.timeseries] == \
        list(np.bincount(np.floor(rows["scheduled"] - window.start + 1e-6).astype(int) + 4))


def test_per_second_rows_do_not_split_a_second_across_batches(small_batches: None) -> None:
    scheduled = 100.0 + np.repeat(np.arange(5), 230) + np.tile(np.linspace(0, 0.99, 230), 5)
    frame = pd.DataFrame({"scheduled": scheduled, "status": 200, "latency_ms": np.arange(len(scheduled), dtype=float)})
    rows = per_second(frame, 100.0, slo_ms=500.0)
    assert [(r.t, r.requests) for r in rows] == [(t, 230) for t in range(5)]
    assert rows[2].p50_ms == float(np.percentile(np.arange(460, 690), 50))
    assert [r.within_slo for r in rows] == [230, 230, 41, 0, 0]


def test_per_second_rows_count_what_was_served_by_the_second_it_arrived(small_batches: None) -> None:
    """A server that stalls through second 1 serves that second's requests in second 2: offered stays 10 a
    second while served reads 10, 0, 20; a failed request is offered and never served."""
    scheduled = 100.0 + np.arange(30) / 10.0
    latency_ms = np.where((scheduled >= 101.0) & (scheduled < 102.0), 102.05 - scheduled, 0.002) * 1000.0
    status = np.where(np.arange(30) == 25, 0, 200)
    rows = per_second(pd.DataFrame({"scheduled": scheduled, "status": status, "latency_ms": latency_ms}), 100.0,
                      slo_ms=500.0)
    assert [(r.t, r.requests, r.served) for r in rows] == [(0, 10, 10), (1, 10, 0), (2, 10, 19)]


def test_a_baseline_reduced_in_batches_equals_one_reduced_whole(tmp_path: Path, small_batches: None) -> None:
    rows = _write_generator_files(tmp_path / "load", np.random.default_rng(3), [3_000, 2_500])
    merged = merge_generator_files(tmp_path / "load", tmp_path / "cell.parquet", (1_002.0, 1_019.0))
    for kept in (300, 100_000):
        streamed = reduce_samples(merged, 17.0, max_kept=kept)
        whole = reduce_samples(merged.whole(), 17.0, max_kept=kept)
        assert streamed is not None and whole is not None
        assert streamed.blocks() == whole.blocks()
        assert streamed.kept == min(kept, streamed.successful)
    inside = rows[(rows["scheduled"] >= 1_002.0) & (rows["scheduled"] < 1_019.0)]
    assert whole.successful == int((inside["status"] == 200).sum())


def test_parquet_samples_hand_out_only_the_columns_they_hold(tmp_path: Path) -> None:
    path = tmp_path / "old.parquet"
    pd.DataFrame({"scheduled": [2.0, 1.0], "latency_ms": [5.0, 6.0]}).to_parquet(path)
    source = ParquetSamples(path)
    assert [list(batch.columns) for batch in source.batches(["latency_ms", "queued"])] == [["latency_ms"]]


def test_csv_blocks_cut_only_between_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_file, "CSV_BLOCK_BYTES", 50)  # every block boundary falls inside a line
    rows = _write_generator_files(tmp_path / "load", np.random.default_rng(4), [40])
    with (tmp_path / "load" / "samples-0.csv").open("a") as torn:
        torn.write("1003.25,1003.25,4.0,3.9,2")  # killed mid-status: a status of 2 must not be read
    merged = merge_generator_files(tmp_path / "load", tmp_path / "out.parquet")
    frame = merged.whole()
    assert len(frame) == 40 and 2 not in set(frame["status"])
    pd.testing.assert_frame_equal(frame, rows.sort_values("scheduled", kind="stable").reset_index(drop=True),
                                  check_dtype=False)


def test_the_generators_row_formats_read_back_as_the_sample_columns(tmp_path: Path) -> None:
    """bench.load.planned_user writes SAMPLE_ROW per request and DROPPED_ROW per slot never sent."""
    folder = tmp_path / "load"
    folder.mkdir()
    (folder / "samples-0-1.csv").write_text(SAMPLE_ROW % (1000.000001, 1000.000051, 0.3125, 0.2625, 200, 12, 0, True)
                                            + DROPPED_ROW % (1000.5, 40.25, 0))
    frame = merge_generator_files(folder, tmp_path / "samples.parquet").whole()
    assert list(frame.columns) == SAMPLE_COLUMNS
    sent, dropped = frame.to_dict("records")
    assert sent == pytest.approx({"scheduled": 1000.000001, "sent": 1000.000051, "latency_ms": 0.3125,
                                  "service_ms": 0.2625, "status": 200, "bytes": 12, "worker": 0, "queued": 1})
    assert dropped["status"] == DROPPED and dropped["latency_ms"] == 40.25 and np.isnan(dropped["sent"])
    assert dropped["queued"] == 1
