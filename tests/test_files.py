"""Files read back from a run folder stay inside it; files written replace the old ones whole; an inlined
flame graph keeps only what our renderer draws."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.files import inside, write_durably
from bench.report.safe_svg import safe_svg
from bench.server_time.flamegraph import render_svg
from bench.server_time.rules import Classifier
from bench.server_time.stacks import parse_collapsed


@pytest.mark.parametrize("relative", ["../outside.parquet", "/etc/passwd", "samples/../../outside.parquet",
                                      "samples/link.parquet"])
def test_a_path_from_results_json_that_leaves_the_run_folder_is_refused(tmp_path: Path, relative: str) -> None:
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (tmp_path / "outside.parquet").write_bytes(b"not yours")
    (run / "samples" / "link.parquet").symlink_to(tmp_path / "outside.parquet")
    with pytest.raises(BenchError, match="points outside the run folder"):
        inside(run, relative, "samples file")
    assert inside(run, "samples/001.parquet", "samples file") == (run / "samples" / "001.parquet").resolve()


def test_a_durable_write_replaces_the_file_whole_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    write_durably(target, '{"new": true}')
    assert target.read_text() == '{"new": true}' and os.listdir(tmp_path) == ["results.json"]
    assert target.stat().st_mode & 0o044  # readable by the team, as a plain write would leave it
    os.chmod(tmp_path, 0o500)  # a folder that refuses the temporary file: the old file stays as it was
    try:
        if os.geteuid() != 0:  # root writes anyway
            with pytest.raises(PermissionError):
                write_durably(target, "lost")
            assert target.read_text() == '{"new": true}'
    finally:
        os.chmod(tmp_path, 0o700)


def test_an_inlined_flame_graph_keeps_our_drawing_and_loses_anything_active() -> None:
    stacks = parse_collapsed("main;serve;predict 30\nmain;serve;encode 10\n")
    ours = render_svg(stacks, Classifier.for_runtime([]), title="fastapi x iris <logreg>")
    rebuilt = str(safe_svg(ours))
    for kept in ("<title>", "<rect", "<text", 'fill="#', "&lt;logreg&gt;", 'viewBox="0 0'):
        assert kept in rebuilt
    assert rebuilt.count("<rect") == ours.count("<rect") and rebuilt.count("<g>") == ours.count("<g>")
    hostile = ('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script>'
               '<g><rect fill="url(https://evil.example/x)" width="3" onclick="alert(3)"/>'
               '<foreignObject><div>x</div></foreignObject><a href="javascript:alert(4)"><text>t</text></a>'
               '<style>*{background:url(https://evil.example/y)}</style></g></svg>')
    cleaned = str(safe_svg(hostile))
    for gone in ("alert", "script", "onload", "onclick", "url(", "foreignObject", "href", "style", "evil"):
        assert gone not in cleaned, gone
    assert '<rect width="3">' in cleaned
    assert safe_svg("<svg><unclosed></svg>") is None and safe_svg("<html></html>") is None
