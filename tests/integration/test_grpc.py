"""The v2-grpc protocol against a real MLServer: servebench's own protobuf messages read and written by
MLServer's generated classes, and one run measuring MLServer over REST and gRPC side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.config import load_runtime, load_scenario
from bench.models.registry import LocalModel
from bench.protocols import codec_for
from bench.provision.envs import require_env
from bench.results.store import load_results

BENCH = [sys.executable, "-m", "bench.cli"]
BRIEF = Path(__file__).parents[1] / "data" / "brief.yaml"
pytestmark = pytest.mark.integration

ECHO = """
import sys
from mlserver.grpc import dataplane_pb2 as d
request = d.ModelInferRequest()
request.ParseFromString(open(sys.argv[1], "rb").read())
(tensor,) = request.inputs
assert request.model_name == "iris-logreg" and tensor.name == "input-0" and tensor.datatype == "FP64"
response = d.ModelInferResponse(model_name=request.model_name)
output = response.outputs.add(name="predict", datatype="FP64", shape=[tensor.shape[0], 1])
output.contents.fp64_contents.extend([sum(tensor.contents.fp64_contents[i * 4:(i + 1) * 4])
                                      for i in range(tensor.shape[0])])
output.parameters["content_type"].string_param = "np"  # a field servebench's messages leave out
open(sys.argv[2], "wb").write(response.SerializeToString())
"""


def test_our_messages_are_mlservers(tmp_path: Path, runtime_envs: None) -> None:
    """Field numbers and types agree with the classes MLServer generates from the protocol's .proto."""
    env = require_env(load_runtime("mlserver"))
    codec = codec_for("v2-grpc")
    batch = np.arange(8, dtype=np.float64).reshape(2, 4) / 3
    (tmp_path / "request.bin").write_bytes(codec.encode(batch, "iris-logreg"))
    subprocess.run([str(env.path / "bin" / "python"), "-c", ECHO, str(tmp_path / "request.bin"),
                    str(tmp_path / "response.bin")], check=True, capture_output=True, text=True)
    answer = codec.decode((tmp_path / "response.bin").read_bytes())
    np.testing.assert_allclose(answer, batch.sum(axis=1, keepdims=True), rtol=0, atol=1e-12)


def test_mlserver_over_rest_and_grpc_in_one_run(tmp_path: Path, models: dict[str, LocalModel],
                                                runtime_envs: None) -> None:
    out = tmp_path / "run"
    result = subprocess.run([*BENCH, "run", "--runtime", "mlserver", "--protocol", "v2,v2-grpc", "--model",
                             "iris-logreg", "--scenario", str(BRIEF), "--length", "smoke", "--no-mlflow",
                             "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(out)
    cells = {cell.runtime: cell for cell in results.cells}
    assert set(cells) == {"mlserver", "mlserver-v2-grpc"}
    for cell in cells.values():
        assert cell.validity.valid and cell.parity.ok, (cell.runtime, cell.validity.reasons)
        assert cell.counts.completed == cell.counts.scheduled >= load_scenario(str(BRIEF)).min_requests
    assert results.runtime("mlserver-v2-grpc").protocol == "v2-grpc"
    assert results.runtime("mlserver").protocol == "v2"
    html = (out / "report.html").read_text()
    assert "mlserver-v2-grpc" in html and "mlserver" in html
