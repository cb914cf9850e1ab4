"""The results schema: every shape results.json ever had loads into the current typed model, the report
renders the same summary.md from it as the code that wrote it did, and what cannot be read is refused
in one line.

Fixtures (tests/data/runs), one per shape on record:
- schema1-minimal: the DESIGN.md minimum of schema 1 (no labels, cell ids, samples, scenario, runtimes);
- smoke-4runtimes, smoke-2runtimes: schema 1 as of 2026-11-25 (flat cells, no scheduled_rps, no warnings);
- sweep-v1-latest: the last schema-1 shape (scheduled_rps, warnings, sweeps, runtime folder and
  environment facts), written by commit 5e5e2cf with the test-double runtime;
- fake-v2: schema 2, written by the current code (bench run with the test-double runtime);
- fake-v3: schema 3, a smoke run of the test double as the code before bench tune (schema 4) wrote it (7ecdd47);
- fake-v4: schema 4, the same run as the code before every scheduled request was counted (schema 5) wrote it
  (a32685b);
- fake-v5: schema 5, the shape of fake-v2 as the code before server profiles (schema 6) wrote it;
- fake-v6: schema 6, the same run as the code before remote generator workers (schema 7) wrote it;
- fake-v7: schema 7, the same run as the code before server metrics (schema 8) wrote it;
- fake-v8: schema 8, the smoke run as the code before a profile's waits_counted (schema 9) wrote it (43120eb);
- fake-v9: schema 9, the same as the code before the server's queue time (schema 10) wrote it (ff86ac5);
- fake-v10: schema 10, a smoke run of the test double as the code before teams' models (schema 11) wrote it.
tests/data/summaries/*.md are the summary.md files commit 5e5e2cf (before the typed schema) rendered
from these runs and the report tests' variations of them, since changed only where the summary did: the
verdict's "kept up", runtimes that kept up sharing rank 1, and the generator's lateness column
(trust-at-speed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from report_runs import RUNS, materialise, schema1_minimal, with_bad_cells, with_batches, with_sweep

from bench.errors import BenchError
from bench.report.render import render_run_reports
from bench.results.schema import SCHEMA_VERSION, RunResults
from bench.results.store import load_results, write_results

SUMMARIES = Path(__file__).parent / "data" / "summaries"
SHAPES = ["schema1-minimal", "smoke-4runtimes", "smoke-2runtimes", "sweep-v1-latest", "fake-v2", "fake-v3",
          "fake-v4", "fake-v5", "fake-v6", "fake-v7", "fake-v8", "fake-v9", "fake-v10"]


def _copy(name: str) -> Callable[[Path], Path]:
    return lambda dest: materialise(name, dest)


SAVED_RUNS: dict[str, Callable[[Path], Path]] = {
    "smoke-4runtimes": _copy("smoke-4runtimes"), "smoke-2runtimes": _copy("smoke-2runtimes"),
    "bad-cells": with_bad_cells, "sweep": with_sweep, "batches": with_batches, "schema1-minimal": schema1_minimal,
    "sweep-v1-latest": _copy("sweep-v1-latest"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_on_record_loads_and_survives_a_round_trip(shape: str, tmp_path: Path) -> None:
    results = load_results(RUNS / shape)
    assert results.schema_version == SCHEMA_VERSION and results.cells
    written = tmp_path / "results.json"
    write_results(written, results)
    assert load_results(written) == results
    assert json.loads(written.read_text())["schema_version"] == SCHEMA_VERSION


def test_the_minimal_schema_1_file_gets_what_the_report_used_to_derive() -> None:
    results = load_results(RUNS / "schema1-minimal")
    first = results.cells[0]
    assert (first.label, first.cell_id) == ("rate=50", "001-bentoml-iris-logreg-rate=50")
    assert results.scenario is None and results.runtimes == {} and results.status == "unknown"
    assert first.slo is None and first.slo_met is None and first.samples_file is None
    assert first.counts.requests == 625 and first.latency.p50 is not None and first.status == "valid"
    last = results.cells[-1]
    assert last.status == "invalid" and last.reasons == ["error rate 3.00% over the limit 1.00%"]
    assert results.environment.git_sha == "abc123" and results.environment.usable_cpus is None


def test_a_schema_1_run_of_2026_11_keeps_every_figure() -> None:
    raw = json.loads((RUNS / "smoke-4runtimes" / "results.json").read_text())["cells"][0]
    cell = load_results(RUNS / "smoke-4runtimes").cells[0]
    assert cell.latency.model_dump() == raw["latency_ms"] and cell.service.model_dump() == raw["service_ms"]
    assert (cell.latency_ci.p99.low, cell.latency_ci.p99.high) == tuple(raw["latency_ci_ms"]["p99"])  # type: ignore[union-attr]
    assert cell.counts.error_rate == raw["error_rate"] and cell.rates.goodput_rps == raw["goodput_rps"]
    assert cell.server.rss_mb_max == raw["server"]["rss_mb_max"] and cell.slo is not None and cell.slo.ms == 100.0
    # the flat fairness mapping, split: CPU plan, the runtime's knobs (runtime.yaml settings), the rest
    assert cell.fairness.server_cpus == (1,) and cell.fairness.threads_env == 1
    assert cell.fairness.settings == {"workers": 1, "threads": 4, "access_log": False}
    assert cell.load.stages == ((15.0, 50.0),) and cell.load.scheduled_rps is None


def test_the_last_schema_1_shape_keeps_sweeps_warnings_and_environment_facts() -> None:
    raw = json.loads((RUNS / "sweep-v1-latest" / "results.json").read_text())
    results = load_results(RUNS / "sweep-v1-latest")
    cell = results.cells[0]
    assert cell.load.scheduled_rps == raw["cells"][0]["scheduled_rps"]
    assert list(cell.validity.warnings) == raw["cells"][0]["warnings"]
    assert [sweep.max_load_within_slo for sweep in results.sweeps] == [s["max_load_within_slo"] for s in raw["sweeps"]]
    record = results.runtime("fake")
    assert record.provisioning is not None and record.provisioning.kind == "virtualenv"
    assert record.provisioning.size_mb == raw["runtimes"]["fake"]["env_size_mb"]
    assert record.serving_code is not None and record.serving_code.lines is None  # v1 never counted them


def test_a_current_run_records_what_its_comparison_table_shows() -> None:
    results = load_results(RUNS / "fake-v2")
    record = results.runtime("fake")
    assert record.serving_code is not None and record.serving_code.lines == 0
    assert record.provisioning is not None and record.provisioning.size_mb
    assert all(isinstance(cell, type(results.cells[0])) for cell in results.cells)


@pytest.mark.parametrize("name", sorted(SAVED_RUNS))
def test_summary_md_is_what_the_code_before_the_typed_schema_rendered(name: str, tmp_path: Path) -> None:
    run = SAVED_RUNS[name](tmp_path / name)
    _, summary = render_run_reports([run])
    assert summary.read_text() == (SUMMARIES / f"{name}.md").read_text()


def test_an_overlay_summary_is_unchanged_too(tmp_path: Path) -> None:
    runs = [SAVED_RUNS[name](tmp_path / name) for name in ("smoke-4runtimes", "smoke-2runtimes", "schema1-minimal")]
    _, summary = render_run_reports(runs, tmp_path / "overlay")
    assert summary.read_text() == (SUMMARIES / "overlay.md").read_text()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p.update(schema_version=SCHEMA_VERSION + 1),
     f"schema version {SCHEMA_VERSION + 1} is newer than this servebench ({SCHEMA_VERSION})"),
    (lambda p: p.pop("schema_version"), "no schema_version"),
    (lambda p: p.update(kind="servebench-baseline"), "is a servebench-baseline file, not a run's results"),
])
def test_what_cannot_be_read_is_one_clear_error(edit: Callable[[dict[str, object]], object], message: str,
                                                tmp_path: Path) -> None:
    payload = json.loads((RUNS / "smoke-2runtimes" / "results.json").read_text())
    edit(payload)
    (tmp_path / "results.json").write_text(json.dumps(payload))
    with pytest.raises(BenchError) as raised:
        load_results(tmp_path)
    assert message in raised.value.message and "\n" not in raised.value.message and raised.value.hint


def test_a_damaged_current_file_names_the_field(tmp_path: Path) -> None:
    payload = json.loads((RUNS / "fake-v2" / "results.json").read_text())
    payload["cells"][0]["latency"]["p50"] = "fast"
    (tmp_path / "results.json").write_text(json.dumps(payload))
    with pytest.raises(BenchError, match=r"field 'cells\.0\.latency\.p50'"):
        load_results(tmp_path)
    payload["cells"][0]["latency"]["p50"] = 1.0
    payload["cells"][0]["counts"]["requests"] = "many"  # carried through the upgrade to schema 5's name
    (tmp_path / "results.json").write_text(json.dumps(payload))
    with pytest.raises(BenchError, match=r"field 'cells\.0\.counts\.scheduled'"):
        load_results(tmp_path)


def test_results_are_immutable() -> None:
    results: RunResults = load_results(RUNS / "smoke-2runtimes")
    with pytest.raises(ValueError):
        results.cells[0].counts.requests = 1  # type: ignore[misc]


def test_a_schema_5_cell_upgrades_without_a_profile_and_a_profiled_cell_round_trips(tmp_path: Path) -> None:
    """Schema 6 adds server_profile and model_cost; a schema-5 file (fake-v5, the shape the code before
    them wrote) has neither, and a cell carrying both survives a write and a read."""
    from bench.results.schema import ModelCost, ProfileShares, ServerProfile

    results = load_results(RUNS / "fake-v5")
    assert all(cell.server_profile is None and cell.model_cost is None for cell in results.cells)
    profile = ServerProfile(rate_hz=100, samples=812, processes=1, flamegraph="profiles/001.svg",
                            stacks="profiles/001.txt",
                            shares=ProfileShares(model=0.5, serialisation=0.1, http=0.3, other=0.05, unclassified=0.05))
    cell = results.cells[0].model_copy(update={"server_profile": profile, "model_cost": ModelCost(
        predict_ms_p50=0.08, predict_ms_mean=0.09, calls=200, batch_size=1)})
    written = tmp_path / "results.json"
    write_results(written, results.model_copy(update={"cells": (cell, *results.cells[1:])}))
    again = load_results(written).cells[0]
    assert again.server_profile == profile and again.model_cost is not None and again.model_cost.predict_ms_p50 == 0.08


def test_a_schema_6_cell_upgrades_with_a_local_generator_and_remote_workers_round_trip(tmp_path: Path) -> None:
    """Schema 7 adds generator.workers; a schema-6 file (fake-v6) has none, and a cell naming two remote
    workers survives a write and a read."""
    from bench.results.schema import GeneratorUsage, GeneratorWorker

    results = load_results(RUNS / "fake-v6")
    assert all(cell.generator is None or cell.generator.workers == () for cell in results.cells)
    workers = (GeneratorWorker(index=0, host="gen-a", address="10.213.0.2", clock_offset_ms=0.01, clock_rtt_ms=0.3,
                               samples=120, finished=True),
               GeneratorWorker(index=1, host="gen-b", address="10.213.0.3", clock_offset_ms=-0.02, clock_rtt_ms=0.2,
                               samples=119, finished=True))
    cell = results.cells[0].model_copy(update={"generator": GeneratorUsage(cpu_percent_max=12.0, workers=workers)})
    written = tmp_path / "results.json"
    write_results(written, results.model_copy(update={"cells": (cell, *results.cells[1:])}))
    again = load_results(written).cells[0]
    assert again.generator is not None and again.generator.workers == workers


def test_a_schema_7_cell_upgrades_without_server_metrics_and_metrics_round_trip(tmp_path: Path) -> None:
    """Schema 8 adds server_metrics; a schema-7 file (fake-v7) has none, and a cell's metrics survive a write."""
    from bench.results.profiles import MetricsSecond, ServerMetrics

    results = load_results(RUNS / "fake-v7")
    assert results.schema_version == SCHEMA_VERSION and all(cell.server_metrics is None for cell in results.cells)
    metrics = ServerMetrics(url="http://127.0.0.1:9/metrics", series="request_predict_seconds", scrapes=17,
                            requests=750.0, mean_ms=0.42, p50_ms=0.3, p99_ms=2.4,
                            per_second=(MetricsSecond(t=0, requests=50.0, mean_ms=0.4),))
    cell = results.cells[0].model_copy(update={"server_metrics": metrics})
    written = tmp_path / "results.json"
    write_results(written, results.model_copy(update={"cells": (cell, *results.cells[1:])}))
    assert load_results(written).cells[0].server_metrics == metrics


def test_a_schema_10_run_reads_as_reference_models_with_nothing_left_out() -> None:
    """Schema 11 describes a team's model and records unsupported pairs; a schema-10 run (fake-v10) served the
    reference model, and skipped pairs were not recorded."""
    results = load_results(RUNS / "fake-v10")
    assert results.schema_version == SCHEMA_VERSION and results.unsupported == ()
    [record] = results.models.values()
    assert record.source is None and record.version is not None and record.fingerprint is not None


def _cell_figures(name: str) -> tuple[float, int]:
    """The first cell's latency p50 and scheduled count as the file holds them (before any upgrade)."""
    cell = json.loads((RUNS / name / "results.json").read_text())["cells"][0]
    return cell["latency"]["p50"], cell["counts"].get("scheduled", cell["counts"].get("requests"))


@pytest.mark.parametrize("name", ["fake-v3", "fake-v4"])
def test_schema_3_and_4_runs_gain_empty_searches_and_count_every_request_as_scheduled(name: str) -> None:
    """Schemas 3 and 4 add the capacity, tuning and rounds lists (a plain run has none); schema 5 turns the old
    counts (requests sent, errors among them) into scheduled = sent, and says the latency was success-only."""
    p50, requests = _cell_figures(name)
    results = load_results(RUNS / name)
    (cell,) = results.cells
    assert results.capacity == () and results.tuning == () and results.rounds == ()
    assert cell.latency.p50 == p50 and cell.counts.scheduled == cell.counts.sent == requests
    assert cell.counts.dropped is None and cell.latency_includes == "successful"


def test_a_schema_8_docker_profile_is_marked_as_counting_waits_and_a_local_one_is_not(tmp_path: Path) -> None:
    """Schema 9's waits_counted: a Docker profile before it was sampled from the host, where py-spy counted the
    container's waiting threads as running."""
    payload = json.loads((RUNS / "fake-v8" / "results.json").read_text())
    profile = {"profiler": "py-spy", "rate_hz": 100, "samples": 300, "processes": 1}
    local = {**payload["cells"][0], "server_profile": profile}
    docker = {**local, "target": "docker", "cell_id": "002-docker"}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({**payload, "cells": [local, docker]}))
    first, second = load_results(folder).cells
    assert first.server_profile is not None and not first.server_profile.waits_counted
    assert second.server_profile is not None and second.server_profile.waits_counted


def test_a_schema_9_run_keeps_its_figures_and_reads_no_server_queue() -> None:
    p50, scheduled = _cell_figures("fake-v9")
    (cell,) = load_results(RUNS / "fake-v9").cells
    assert cell.latency.p50 == p50 and cell.counts.scheduled == scheduled and cell.server_metrics is None
