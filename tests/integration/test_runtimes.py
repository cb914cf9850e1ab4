"""Every runtime, started for real from its own environment, answers like the reference model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.config import load_runtime
from bench.measure.check import check_pair
from bench.models.catalog import get_spec
from bench.models.registry import LocalModel
from bench.targets.base import Deployment
from bench.targets.local import LocalTarget

pytestmark = pytest.mark.integration

RUNTIMES = ["mlserver", "mlflow", "fastapi", "bentoml"]


@pytest.mark.parametrize("model_name", ["iris-logreg", "digits-cnn"])
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_runtime_answers_golden_inputs(runtime_name: str, model_name: str, models: dict[str, LocalModel],
                                       runtime_envs: None, tmp_path: Path, no_new_servers: None) -> None:
    row = check_pair(LocalTarget(), load_runtime(runtime_name), get_spec(model_name), tmp_path)
    assert row.status == "ok", f"{row.error}; log {row.log}"
    assert row.max_abs_diff is not None and row.max_abs_diff <= get_spec(model_name).parity_atol
    assert row.startup_s is not None and 0 < row.startup_s < 120
    assert row.rss_mb is not None and row.rss_mb > 50  # a Python server with a model loaded


@pytest.fixture(scope="module")
def fastapi_iris(models: dict[str, LocalModel], runtime_envs: None,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with LocalTarget().deploy(load_runtime("fastapi"), models["iris-logreg"],
                              tmp_path_factory.mktemp("logs")) as deployment:
        yield deployment


BAD_BODIES = {
    "not json": (b"{not json", 422),
    "no instances": (b'{"rows": [[1, 2, 3, 4]]}', 422),
    "empty": (b'{"instances": []}', 422),
    "wrong width": (b'{"instances": [[1, 2, 3]]}', 422),
    "ragged": (b'{"instances": [[1, 2, 3, 4], [1, 2]]}', 422),
    "strings": (b'{"instances": [["a", "b", "c", "d"]]}', 422),
    "NaN": (b'{"instances": [[NaN, 1, 2, 3]]}', 422),
    "too many rows": (json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]] * 5000}).encode(), 422),
    "oversized": (b'{"instances": [[' + b"1.0," * (5 * 2**20) + b"1.0]]}", 413),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_fastapi_rejects_bad_input_with_4xx(fastapi_iris: Deployment, case: str) -> None:
    body, expected = BAD_BODIES[case]
    response = requests.post(fastapi_iris.endpoint.predict_url, data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == expected, response.text[:200]
    assert fastapi_iris.alive()


def test_fastapi_v2_endpoints(fastapi_iris: Deployment, models: dict[str, LocalModel]) -> None:
    base = fastapi_iris.endpoint.base_url
    model = models["iris-logreg"]
    assert requests.get(f"{base}/v2/health/live", timeout=5).status_code == 200
    assert requests.get(f"{base}/v2/models/iris-logreg/ready", timeout=5).status_code == 200
    assert requests.get(f"{base}/v2/models/other/ready", timeout=5).status_code == 404
    request = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                           "data": model.golden_inputs[:2].ravel().tolist()}]}
    answer = requests.post(f"{base}/v2/models/iris-logreg/infer", json=request, timeout=5).json()
    output = np.asarray(answer["outputs"][0]["data"]).reshape(answer["outputs"][0]["shape"])
    np.testing.assert_allclose(output, model.golden_outputs[:2], atol=1e-9)
    request["inputs"][0]["shape"] = [3, 4]
    assert requests.post(f"{base}/v2/models/iris-logreg/infer", json=request, timeout=5).status_code == 422
    assert requests.post(f"{base}/v2/models/nope/infer", json=request, timeout=5).status_code == 404
