"""Server profiles, pure logic: py-spy's collapsed stacks parsed, frames classified by the rules file and a
runtime's own rules, shares that sum to 1, and the flame graph drawn as a self-contained SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.runtime_options import FrameRule
from bench.server_time.flamegraph import render_svg
from bench.server_time.rules import Classifier, common_rules
from bench.server_time.stacks import Frame, parse_collapsed

PROCESS = 'process 101:"/venv/bin/python -m uvicorn app:app; --port 8000"'
WORKER = 'process 102:"/venv/bin/python worker.py"'
RAW = "\n".join([
    f"{PROCESS};<module> (app.py);run (uvicorn/main.py);run_until_complete (asyncio/base_events.py);"
    "predict (app.py);predict (sklearn/linear_model/_base.py);safe_sparse_dot (sklearn/utils/extmath.py) 40",
    f"{PROCESS};<module> (app.py);run (uvicorn/main.py);run_until_complete (asyncio/base_events.py);"
    "predict (app.py);checked_rows (servebench_serving.py) 10",
    f"{PROCESS};<module> (app.py);run (uvicorn/main.py);dumps (json/__init__.py);encode (json/encoder.py) 15",
    f"{PROCESS};<module> (app.py);run (uvicorn/main.py);data_received (uvicorn/protocols/http/httptools_impl.py) 20",
    f"{PROCESS};{WORKER};<module> (worker.py);handle (mlserver/handlers/dataplane.py) 5",
    f"{PROCESS};{WORKER};<module> (worker.py);emit (logging/__init__.py) 3",
    f"{PROCESS};<module> (app.py);mystery (app.py) 5",
    f"{PROCESS} 2",  # a sample without a Python stack
    "a truncated last line without a count",
])


def test_collapsed_stacks_parse_with_processes_whose_command_holds_a_semicolon() -> None:
    stacks = parse_collapsed(RAW)
    assert [s.count for s in stacks] == [40, 10, 15, 20, 5, 3, 5, 2]
    assert stacks[-1].frames == stacks[0].frames[:1]  # the same process, named the same
    first = stacks[0].frames
    assert first[0].is_process and "--port 8000" in first[0].function
    assert first[-1] == Frame("safe_sparse_dot", "sklearn/utils/extmath.py")
    assert first[-1].module == "sklearn.utils.extmath"
    assert stacks[4].frames[1].is_process and stacks[4].frames[2] == Frame("<module>", "worker.py")


@pytest.mark.parametrize(("file", "module"), [
    ("json/__init__.py", "json"), ("/root/.cache/envs/x/lib/python3.11/site-packages/numpy/core/numeric.py",
                                   "numpy.core.numeric"),
    ("/work/runtimes/fake/server.py", "server"), ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap>"),
])
def test_a_frame_knows_its_module(file: str, module: str) -> None:
    assert Frame("f", file).module == module


def test_each_sample_counts_once_at_its_innermost_classified_frame() -> None:
    shares = Classifier.for_runtime([]).shares(parse_collapsed(RAW))
    assert shares is not None
    total = 100
    assert shares.model == pytest.approx(40 / total)  # sklearn under the app's predict, under asyncio
    assert shares.serialisation == pytest.approx((10 + 15) / total)  # the row check and json
    assert shares.http == pytest.approx(20 / total)  # uvicorn's protocol
    assert shares.framework == pytest.approx(5 / total)
    assert shares.other == pytest.approx(3 / total)  # logging
    assert shares.unclassified == pytest.approx(7 / total)  # app.py and <module> match no rule; no stack
    assert sum(shares.model_dump().values()) == pytest.approx(1.0)


def test_a_runtimes_own_rules_come_first() -> None:
    mine = [FrameRule(category="framework", modules=("app",)), FrameRule(category="model", modules=("json",))]
    shares = Classifier.for_runtime(mine).shares(parse_collapsed(RAW))
    assert shares is not None
    assert shares.unclassified == pytest.approx(0.02)  # app.py is the runtime's framework now; no stack stays
    assert shares.model == pytest.approx(0.55)  # json counted as model by the runtime's rule, as it says
    assert shares.serialisation == pytest.approx(0.10)


def test_no_samples_no_shares_and_a_rule_must_match_something() -> None:
    assert Classifier.for_runtime([]).shares([]) is None
    with pytest.raises(ValidationError):
        FrameRule(category="model")
    with pytest.raises(ValidationError):
        FrameRule.model_validate({"category": "gpu", "modules": ["x"]})


def test_the_shipped_rules_file_loads_and_names_every_category() -> None:
    assert {rule.category for rule in common_rules()} == {"model", "serialisation", "http", "framework", "other"}


def test_the_flame_graph_is_a_self_contained_svg() -> None:
    stacks = parse_collapsed(RAW)
    svg = render_svg(stacks, Classifier.for_runtime([]), "fake x iris <rate=50>")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<script" not in svg and "href" not in svg and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("safe_sparse_dot (sklearn/utils/extmath.py): 40 samples (40.0%), model") for t in titles)
    assert any("all samples: 100 samples" in t for t in titles)
    assert "fake x iris &lt;rate=50&gt;" in svg  # text is escaped
    rects = {r.get("fill") for r in root.iter("{http://www.w3.org/2000/svg}rect")}
    assert "#4e9a5b" in rects and "#5b8fd0" in rects  # model green, HTTP blue


def test_the_report_shows_where_the_time_goes_from_the_saved_files_alone(tmp_path: Path) -> None:
    """A saved run with a profiled cell (its flame graph beside it) renders the section: the stacked bar, the
    model's cost against p50, the serving CPU per request in the summary, and the SVG inlined under the CSP."""
    from report_runs import materialise

    from bench.report.render import render_run_reports
    from bench.results.schema import ModelCost, ProfileShares, ServerProfile
    from bench.results.store import load_results, write_results

    run = materialise("fake-v2", tmp_path / "run")
    results = load_results(run)
    (run / "profiles").mkdir()
    (run / "profiles" / "001.svg").write_text(render_svg(parse_collapsed(RAW), Classifier.for_runtime([]), "fake"))
    first = results.cells[0]
    profiled = first.model_copy(update={
        "server_profile": ServerProfile(rate_hz=100, samples=100, processes=2, flamegraph="profiles/001.svg",
                                        stacks="profiles/001.txt", shares=ProfileShares(
                                            model=0.4, serialisation=0.25, http=0.2, framework=0.05, other=0.03,
                                            unclassified=0.07)),
        "model_cost": ModelCost(predict_ms_p50=0.5, predict_ms_mean=0.6, calls=100, batch_size=1),
        "server": first.server.model_copy(update={"cpu_s_per_1000": 2.0})})
    write_results(run / "results.json", results.model_copy(update={"cells": (profiled, *results.cells[1:])}))
    report, _ = render_run_reports([run])
    html = report.read_text()
    section = html[html.index('<section id="time">'):]
    section = section[:section.index("</section>")]
    assert "model 40.0%" in section and "unclassified 7.0%" in section and "100 samples at 100 Hz" in section
    assert f"of fake&#39;s {first.latency.p50:.2f} ms p50, 0.500 ms is the model&#39;s own predict" in section
    assert "serving CPU 1.200 ms per request" in section  # 2.0 CPU-ms per request, 60% outside the model
    assert "<svg" in section and "safe_sparse_dot (sklearn/utils/extmath.py)" in section
    assert '<th class="num">serving ms/req</th>' in html and '<td class="num">1.200</td>' in html
    assert "default-src 'none'" in html and "<script" not in html
