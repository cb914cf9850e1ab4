"""The report layer from saved run folders: report.html and summary.md for one run, an overlay of several,
runs with invalid and failed cells, sweeps and batch sizes, and an old minimal schema-1 results file."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from report_runs import (
    materialise,
    read,
    schema1_minimal,
    with_bad_cells,
    with_batches,
    with_capacity,
    with_sweep,
    with_tuning,
    write,
)

from bench.config import parse_runtime_spec
from bench.errors import BenchError
from bench.provision.serving_code import count_code_lines, serving_code
from bench.report import render_run_reports
from bench.report.figures import model_charts
from bench.report.format import DASH
from bench.report.model import load_runs
from bench.report.ranking import common_load, model_verdicts
from bench.report.runtime_table import runtime_facts
from bench.results.schema import Provisioning
from bench.results.store import load_results, write_results

RUNTIMES = ("bentoml", "fastapi", "mlflow", "mlserver")
SECTIONS = ("verdict", "summary", "figures", "comparison", "environment")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports come from saved files alone: any connection attempt while rendering is a bug."""
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"the report tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def smoke(tmp_path: Path) -> Path:
    return materialise("smoke-4runtimes", tmp_path / "smoke")


def _summary_rows(html: str) -> list[str]:
    table = html.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr class=\"(valid|invalid|failed)\">", table)


def _line(text: str, key: str) -> str:
    """The one line of a summary that holds key: where a test then checks facts, not the sentence's wording."""
    (line,) = [line for line in text.splitlines() if key in line]
    return line


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_smoke_run_renders_into_its_folder_from_saved_files(smoke: Path) -> None:
    before = _digest(smoke / "results.json")
    report, summary = render_run_reports([smoke])

    assert (report, summary) == (smoke / "report.html", smoke / "summary.md")
    assert _digest(smoke / "results.json") == before  # rendering never rewrites the results
    html = report.read_text()
    positions = [html.index(f'<section id="{name}">') for name in SECTIONS]
    assert positions == sorted(positions), "sections are out of the issue's order"
    assert not re.search(r"https?://|<script|<link|@import|url\(", html), "the page must not reference the network"
    assert "Content-Security-Policy" in html
    assert html.count('src="data:image/svg+xml;base64,') == 4  # spectrum, CDF, timeline, resources
    assert "Latency vs offered load: not drawn." in html and "Batch-size effect: not drawn." in html
    (recommendation,) = re.findall(r'<p class="recommendation">(.*?)</p>', html)
    chosen, reasons = recommendation.split(":", 1)
    assert chosen.split()[-1] == "fastapi"  # fastapi's p99 first, against the runner-up's
    assert reasons.index("2.43 ms") < reasons.index("5.01 ms") < reasons.index("mlserver")
    assert _summary_rows(html) == ["valid"] * 4
    for runtime in RUNTIMES:
        assert f"<b>{runtime}</b>" in html
    assert f"2.09{DASH}2.83" in html  # fastapi's p99 confidence interval
    assert "<details><summary>mlserver: 128 packages</summary>" in html
    assert "bfc030addeff661c4e3eecc6e90c1218b8ca7ed6" in html  # git revision


def test_invalid_and_failed_cells_render_with_their_reasons(tmp_path: Path) -> None:
    run = with_bad_cells(tmp_path / "bad")
    report, summary = render_run_reports([run])
    html = report.read_text()

    assert _summary_rows(html) == ["invalid", "valid", "failed", "failed"]  # bentoml, fastapi, mlflow, mlserver
    assert '<span class="badge invalid">invalid</span>' in html
    assert html.count('<span class="badge failed">failed</span>') == 2
    assert "80 requests, fewer than the minimum 100" in html
    assert "parity check failed: not load-tested" in html
    assert "&lt;ImportError: no module &#39;x&#39;&gt;" in html  # server text is escaped, never markup
    assert "<ImportError" not in html
    assert "run 20261125-121208-smoke-quick-cb1a was interrupted" in html
    assert "FAILED (iris-logreg)" in html  # mlserver's parity in the comparison table
    # only the valid cell is ranked; the page still draws the figures of what was measured
    verdict = model_verdicts(load_runs([run]))[0]
    assert [entry.series for entry in verdict.latency] == ["fastapi"]
    assert len(verdict.caveats) >= 3
    assert html.count('src="data:image/svg+xml;base64,') == 4
    text = summary.read_text()
    assert "⚠️ invalid: 80 requests" in text and text.count("❌ failed") == 2
    assert "\\| last log line" in text  # a pipe inside a reason cannot split the Markdown row


def test_old_minimal_schema_1_file_renders(tmp_path: Path) -> None:
    run = schema1_minimal(tmp_path / "old")
    data = load_runs([run])
    assert list(data.cells["label"]) == ["rate=50"] * 4
    assert list(data.cells["status"]) == ["valid", "valid", "valid", "invalid"]
    assert data.cells["cell_id"].is_unique and data.timeseries.empty

    report, summary = render_run_reports([run])
    html = report.read_text()
    assert html.count('src="data:image/svg+xml;base64,') == 1  # the spectrum, from the summary percentiles
    assert "Latency CDF: not drawn." in html and "Throughput and p99 over time: not drawn." in html
    assert "no SLO recorded" in html
    assert "error rate 3.00% over the limit 1.00%" in html
    assert "Choose fastapi" in summary.read_text()


def test_a_newer_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    run = materialise("smoke-2runtimes", tmp_path / "run")
    payload = read(run)
    payload["schema_version"] = 99
    write(run, payload)
    with pytest.raises(BenchError, match="newer than this servebench"):
        render_run_reports([run])


def test_overlay_of_two_runs_labels_rows_by_run_id(tmp_path: Path) -> None:
    first = materialise("smoke-4runtimes", tmp_path / "a")
    second = materialise("smoke-2runtimes", tmp_path / "b")
    report, summary = render_run_reports([first, second], tmp_path / "out")

    assert (report, summary) == (tmp_path / "out" / "report-overlay.html", tmp_path / "out" / "summary-overlay.md")
    assert not (first / "report.html").exists()
    html = report.read_text()
    assert len(_summary_rows(html)) == 6
    assert html.count('<td class="small">20261125-121120-smoke-smoke-9102</td>') >= 2 + 2  # summary + comparison
    assert "fastapi · 20261125-121208-smoke-quick-cb1a" in html
    caveats = re.findall(r"<li>([^<]*run lengths[^<]*)</li>", html)
    assert caveats and "quick, smoke" in caveats[0]  # both run lengths named
    assert "| run | runtime |" in summary.read_text()
    # without out_dir the overlay lands in the first run's folder
    assert render_run_reports([first, second])[0] == first / "report-overlay.html"


def test_sweep_draws_latency_against_load_and_ranks_capacity(tmp_path: Path) -> None:
    data = load_runs([with_sweep(tmp_path / "sweep")])
    verdict = model_verdicts(data)[0]
    assert verdict.common_load == "sweep rate=200"  # the highest rate at which both runtimes were valid
    top, second = verdict.throughput
    assert (top.series, top.label, top.lower_bound) == ("fastapi", "rate=400", True)
    assert (second.series, second.label, second.lower_bound) == ("bentoml", "rate=200", False)
    assert "fastapi" in verdict.recommendation and "399.6/s" in verdict.recommendation  # the capacity leader's
    charts = {chart.key: chart for chart in model_charts(data)["iris-logreg"]}
    assert not charts["load"].skipped and charts["batch"].skipped


def test_batch_sizes_draw_the_batch_effect(tmp_path: Path) -> None:
    data = load_runs([with_batches(tmp_path / "batch")])
    assert set(common_load(data.cells)["batch_size"]) == {1}
    charts = {chart.key: chart for chart in model_charts(data)["iris-logreg"]}
    assert not charts["batch"].skipped and charts["load"].skipped
    assert data.cells.loc[data.cells["batch_size"] == 64, "rows_per_s"].min() > 3000


def test_summary_md_is_compact_and_carries_verdict_and_table(smoke: Path) -> None:
    _, summary = render_run_reports([smoke])
    text = summary.read_text()
    assert len(text) < 6000
    assert text.index("### Verdict") < text.index("### Summary")
    assert "**iris-logreg**: Choose fastapi" in text
    assert f"- p99 at smoke rate=50: 1. fastapi 2.43 ms (2.09{DASH}2.83) · 2. mlserver 5.01 ms" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "iris-logreg" in line]
    assert len(rows) == 4 and all(line.endswith("✅ valid |") for line in rows)
    assert "<img" not in text and "http" not in text


def test_per_second_series_scales_partial_seconds_and_keeps_server_samples(smoke: Path) -> None:
    series = load_runs([smoke]).timeseries
    fastapi = series.loc[series["runtime"] == "fastapi"].set_index("t")
    assert fastapi.loc[-3, "coverage"] == pytest.approx(0.5)  # a 2.5 s warm-up starts mid-second
    assert fastapi.loc[-3, "ok_rps"] == pytest.approx(50.0)
    assert fastapi["server_rss_mb"].notna().all()


def test_raw_samples_are_the_measured_successful_requests(smoke: Path) -> None:
    data = load_runs([smoke])
    samples = data.samples(data.cells)
    counts = samples.groupby("runtime").size()
    assert counts.to_dict() == dict(zip(data.cells["runtime"], data.cells["requests"], strict=True))
    fastapi = samples.loc[samples["runtime"] == "fastapi", "latency_ms"]
    assert fastapi.quantile(0.99) == pytest.approx(2.428644, rel=1e-6)  # the p99 stored in results.json


def test_missing_sample_file_only_skips_the_cdf(smoke: Path) -> None:
    for parquet in (smoke / "samples").glob("*.parquet"):
        parquet.unlink()
    charts = {chart.key: chart for chart in model_charts(load_runs([smoke]))["iris-logreg"]}
    assert charts["cdf"].skipped and not charts["spectrum"].skipped and not charts["timeline"].skipped


def test_lines_of_code_skip_blanks_comments_and_docstrings(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    source.write_text('"""Module docstring\nover two lines."""\n\n# a comment\nimport os  # trailing\n\n\n'
                      'def f(x: int) -> int:\n    """Docstring."""\n    return (x +\n            1)\n'
                      'TEXT = """not a docstring\nbut data"""\n')
    assert count_code_lines(source) == 6
    config = tmp_path / "model-settings.yaml"
    config.write_text("# comment\nname: x\n\nimplementation: y\n")
    assert count_code_lines(config) == 2


def _record_serving_code(run: Path, runtimes: dict[str, Path]) -> None:
    """Rewrite a saved run as a current-schema run that recorded its runtimes' serving code."""
    results = load_results(run)
    records = {name: results.runtime(name).model_copy(update={
        "serving_code": serving_code(parse_runtime_spec(folder / "runtime.yaml")),
        "provisioning": Provisioning(kind="virtualenv", identity="abc", packages=3, size_mb=321.0)})
        for name, folder in runtimes.items()}
    write_results(run / "results.json", results.model_copy(update={"runtimes": {**results.runtimes, **records}}))


def test_runtime_comparison_shows_what_the_run_recorded(smoke: Path) -> None:
    root = Path(__file__).resolve().parent.parent / "runtimes"
    _record_serving_code(smoke, {name: root / name for name in ("fastapi", "bentoml", "mlflow")})
    facts = {fact.runtime: fact for fact in runtime_facts(load_runs([smoke]))}
    assert facts["fastapi"].code_files == ["app.py", "../common/servebench_serving.py"]
    assert facts["fastapi"].code_lines == count_code_lines(root / "fastapi" / "app.py") + \
        count_code_lines(root / "common" / "servebench_serving.py")  # the model and input checks it shares
    assert facts["bentoml"].code_files == ["service.py", "../common/servebench_serving.py"]
    assert facts["bentoml"].code_lines == count_code_lines(root / "bentoml" / "service.py") + \
        count_code_lines(root / "common" / "servebench_serving.py")  # the row check it shares
    assert (facts["mlflow"].code_lines, facts["mlflow"].code_note) == (0, "none: configuration only")
    assert (facts["fastapi"].env_size_mb, facts["fastapi"].env_note) == (321.0, "virtualenv, recorded by the run")
    recorded = read(smoke)["environment"]["runtime_packages"]["mlserver"]
    assert facts["mlserver"].packages == len(set(recorded) - {"pip", "setuptools", "wheel"})
    assert facts["mlserver"].protocol == "v2" and facts["mlserver"].parity.startswith("ok")
    assert facts["fastapi"].startup == "1.70 s"
    # an old run never counted its code: the table says so instead of reading today's folders
    assert (facts["mlserver"].code_lines, facts["mlserver"].code_note) == (None, "unknown: not recorded by the run")


def test_the_comparison_table_survives_the_runtime_folder(smoke: Path, tmp_path: Path) -> None:
    """Counted when the run was made: deleting (or editing) the folder afterwards changes nothing."""
    folder = tmp_path / "team-runtime"
    folder.mkdir()
    (folder / "runtime.yaml").write_text((Path(__file__).parent / "data" / "fake-runtime" / "runtime.yaml")
                                         .read_text() + "serving_code: [handler.py]\n")
    (folder / "handler.py").write_text("# a handler\nimport json\n\nprint(json.dumps({}))\n")
    _record_serving_code(smoke, {"fastapi": folder})
    shutil.rmtree(folder)
    facts = {fact.runtime: fact for fact in runtime_facts(load_runs([smoke]))}
    assert (facts["fastapi"].code_files, facts["fastapi"].code_lines) == (["handler.py"], 2)
    assert facts["fastapi"].code_note == "counted when the run was made"


def test_a_runtime_folder_that_cannot_be_found_is_unknown(smoke: Path) -> None:
    payload = read(smoke)
    for cell in payload["cells"]:
        cell["runtime"] = f"team-{cell['runtime']}"
    payload["runtimes"] = {f"team-{name}": info for name, info in payload["runtimes"].items()}
    write(smoke, payload)
    facts = runtime_facts(load_runs([smoke]))
    assert {fact.code_lines for fact in facts} == {None}
    assert {fact.env_size_mb for fact in facts} == {None}
    assert "unknown" in render_run_reports([smoke])[0].read_text()


def test_common_load_prefers_the_point_every_runtime_shares(smoke: Path) -> None:
    cells = load_runs([smoke]).cells
    extra = cells.loc[cells["runtime"] == "fastapi"].assign(label="rate=800", offered_rps=800.0, cell_id="x")
    chosen = common_load(pd.concat([cells, extra], ignore_index=True))
    assert set(chosen["label"]) == {"rate=50"} and len(chosen) == 4


def test_unreadable_results_give_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(BenchError, match="not a readable results file"):
        render_run_reports([tmp_path])
    with pytest.raises(BenchError, match="no run folder"):
        render_run_reports([])



def test_each_model_gets_its_own_verdict_and_figures(smoke: Path) -> None:
    payload = read(smoke)
    for cell in payload["cells"][2:]:
        cell["model"] = "digits-rf"
    write(smoke, payload)
    data = load_runs([smoke])
    assert [(v.model, [e.series for e in v.latency]) for v in model_verdicts(data)] == [
        ("digits-rf", ["mlserver", "mlflow"]), ("iris-logreg", ["fastapi", "bentoml"])]
    assert sorted(model_charts(data)) == ["digits-rf", "iris-logreg"]
    html = render_run_reports([smoke])[0].read_text()
    assert html.count('<div class="card">\n    <h3>') == 2


def test_a_capacity_run_shows_each_capacity_its_interval_and_what_limited_it(tmp_path: Path) -> None:
    folder = with_capacity(tmp_path / "capacity")
    html, markdown = render_run_reports([folder])
    summary = markdown.read_text()
    assert "### Capacity" in summary
    assert f"| fastapi | iris-logreg | workers=1 | p99 ≤ 50 ms | 312.0 | 290.0{DASH}340.0 | {DASH} | 4 |" \
        in summary
    assert f"| bentoml | iris-logreg | workers=1 | p99 ≤ 50 ms | 181.0 | 170.0{DASH}open | the load generator" \
        in summary
    page = html.read_text()
    assert 'id="capacity"' in page
    assert not {chart.key: chart for chart in model_charts(load_runs([folder]))["iris-logreg"]}["load"].skipped
    assert summary.index("### Capacity") < summary.index("### Summary")


def test_a_tuning_run_shows_default_against_best_and_whether_the_ranking_changed(tmp_path: Path) -> None:
    html, markdown = render_run_reports([with_tuning(tmp_path / "tuning")])
    summary = markdown.read_text()
    assert "### Tuning" in summary and summary.index("### Tuning") < summary.index("### Summary")
    assert (f"| fastapi | iris-logreg | grid | workers=1 | 150.0 (140.0{DASH}160.0) | workers=2 | "
            f"312.0 (290.0{DASH}340.0) | +108% | 0.8 CPU-s | 0.0356 per million | 2 | 0 |") in summary
    fastapi_cost = _line(summary, "cost at the best configuration").split("fastapi", 1)[1].split("bentoml", 1)[0]
    assert all(fact in fastapi_cost for fact in ("0.8 CPU-s", "0.0356 per million", "0.04 per core-hour", "120 MB"))
    assert "| 312.0 |" in summary and "0.0356 per million |" in summary  # the capacity table's cost too
    assert "| bentoml | iris-logreg | coordinate descent | threads=4 |" in summary and "| 2 | 1 |" in summary
    best, default = _line(summary, "best against best").split("default", 1)
    assert "fastapi > bentoml" in best and "bentoml > fastapi" in default and "fastapi vs bentoml" in default
    # the verdict is the capacity ranking, best against best, not the probes' p99; it points at the change
    verdict = _line(summary, "**iris-logreg**")
    assert verdict.index("fastapi") < verdict.index("312") < verdict.index("181") < verdict.index("bentoml")
    assert "p99 ≤ 50" in verdict and "workers=2" in verdict and "tuning section" in verdict
    page = html.read_text()
    assert 'id="tuning"' in page and 'alt="tuning frontier"' in page and "data:image/svg+xml;base64," in page


def test_the_verdict_says_what_each_runtime_costs_in_server_cpu_at_the_common_load(smoke: Path) -> None:
    from bench.results.store import load_results, write_results

    results = load_results(smoke)
    per_runtime = {"fastapi": 0.4, "mlserver": 1.25, "mlflow": 2.0, "bentoml": 3.5}
    cells = tuple(cell.model_copy(update={"server": cell.server.model_copy(
        update={"cpu_s_per_1000": per_runtime[cell.runtime]})}) for cell in results.cells)
    write_results(smoke / "results.json", results.model_copy(update={"cells": cells}))
    summary = render_run_reports([smoke])[1].read_text()
    verdict = summary.split("### Verdict", 1)[1].split("\n- ", 1)[0]
    assert "fastapi 0.4," in verdict and "mlserver 1.25" in verdict and "bentoml 3.5" in verdict
    assert "| 0.400 |" in summary  # and the summary table's column


def test_the_report_names_each_remote_worker_of_a_cell_from_saved_files(tmp_path: Path) -> None:
    from report_runs import materialise

    from bench.report.render import render_run_reports
    from bench.results.schema import GeneratorUsage, GeneratorWorker
    from bench.results.store import load_results, write_results

    run = materialise("fake-v2", tmp_path / "run")
    results = load_results(run)
    first = results.cells[0]
    workers = (GeneratorWorker(index=0, host="servebench-workers-7d9f-abcde", address="10.244.0.7", samples=812,
                               clock_offset_ms=0.41, clock_rtt_ms=0.5, clock_drift_ms=0.02, late_mean_ms=0.31,
                               late_max_ms=4.2, cpu_percent_max=37.0, finished=True),
               GeneratorWorker(index=1, host="host-b", address="10.244.0.8", samples=790, finished=False))
    generator = GeneratorUsage(cpu_percent_max=37.0, cpu_percent_mean=20.0, workers=workers)
    cells = (first.model_copy(update={"generator": generator}), *results.cells[1:])
    write_results(run / "results.json", results.model_copy(update={"cells": cells}))
    html = render_run_reports([run])[0].read_text()
    section = html[html.index('<section id="generators">'):]
    section = section[:section.index("</section>")]
    assert "servebench-workers-7d9f-abcde" in section and "10.244.0.8" in section
    assert "0.410 ms ± 0.250 ms" in section and "0.310 / 4.20 ms" in section and "37%" in section
    assert section.count("<td>yes</td>") == 1 and section.count("<td>no</td>") == 1
    assert 'href="#generators"' in html
    plain = render_run_reports([materialise("fake-v2", tmp_path / "plain")])[0].read_text()
    assert 'id="generators"' not in plain  # a local generator has nothing to show here


def test_at_one_offered_load_throughput_ranks_only_who_fell_behind(tmp_path: Path) -> None:
    """make bench once crowned Ray Serve 'highest throughput' for 49.3/s against 48.1/s: its window held another
    slice of the same draw. Every runtime that kept up with the offered load is tied, whatever its count."""
    run = materialise("smoke-2runtimes", tmp_path / "run")
    payload = read(run)
    for cell, (requests, throughput) in zip(payload["cells"], [(247, 49.3), (240, 48.1)], strict=True):
        cell.update(requests=requests, throughput_rps=throughput, achieved_rps=throughput)
    write(run, payload)
    verdict = model_verdicts(load_runs([run]))[0]
    leader, second = verdict.throughput
    assert leader.lower_bound and second.lower_bound and second.tied_with_leader
    assert leader.rank == second.rank == 1  # nothing orders them
    assert "every runtime kept up" in verdict.recommendation and "highest throughput" not in verdict.recommendation

    payload["cells"][1].update(throughput_rps=40.0)  # bentoml completed 200 of its 240: it fell behind
    write(run, payload)
    verdict = model_verdicts(load_runs([run]))[0]
    leader, second = verdict.throughput
    assert (leader.series, leader.lower_bound) == ("fastapi", True)
    assert (second.series, second.lower_bound, second.tied_with_leader, second.rank) == ("bentoml", False, False, 2)
