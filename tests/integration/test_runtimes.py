"""Every runtime, started for real from its own environment, answers like the reference model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from bench.config import available_runtimes, load_runtime
from bench.measure.parity import check_parity
from bench.models.registry import LocalModel
from bench.protocols import codec_for
from bench.targets.base import Deployment
from bench.targets.local import LocalTarget

pytestmark = pytest.mark.integration

RUNTIMES = available_runtimes()
# Third-party servers that answer some bad input with other than a 4xx, as measured on digits-cnn: asserted
# exactly, so that a fix upstream (or a regression in one of ours) shows. Every other runtime answers every
# bad body with a 4xx. MLServer 1.7: a model exception (a wrong width, a ragged tensor) is a 500, so is a body
# over its limit, declared or streamed, and an empty tensor gets an empty answer; MLflow 3.17's scoring server
# passes NaN and infinity (1e400) to the torch model and answers 200.
KNOWN_DEVIATIONS = {
    "mlserver": {"wrong width": 500, "ragged": 500, "empty": 200, "oversized": 500, "oversized, chunked": 500},
    "mlflow": {"NaN": 200, "overflowing float": 200},
}


SENTINEL = 1234567.25  # exact in binary: found verbatim in the encoded body and replaced


def _ragged(value: Any) -> bool:
    """Make the first batch in a parsed body ragged, in place: a list of rows loses one value of its second
    row; a V2 tensor's flat data loses its last value (its shape no longer matches). True once done."""
    if isinstance(value, dict):
        if isinstance(value.get("data"), list) and "shape" in value and value["data"] \
                and not isinstance(value["data"][0], list):
            value["data"].pop()
            return True
        return any(_ragged(item) for item in value.values())
    if isinstance(value, list):
        if len(value) >= 2 and all(isinstance(row, list) for row in value):
            value[1].pop()
            return True
        return any(_ragged(item) for item in value)
    return False


def bad_bodies(protocol: str, model: LocalModel) -> dict[str, bytes]:
    """Malformed, non-finite, ragged, huge and oversized requests in the runtime's own protocol, built by
    its codec."""
    codec = codec_for(protocol)
    good = model.golden_inputs[:2]
    with_nan = good.copy()
    with_nan[0, 0] = np.nan
    marked = good.astype(np.float64)
    marked[0, 0] = SENTINEL
    template = codec.encode(marked.astype(good.dtype), model.name)
    assert str(SENTINEL).encode() in template, template[:200]
    ragged = json.loads(codec.encode(good, model.name))
    assert _ragged(ragged)
    return {
        "not json": b"{not json",
        "wrong envelope": b'{"rows": [[1, 2, 3, 4]]}',
        "wrong width": codec.encode(good[:, :3], model.name),
        "ragged": json.dumps(ragged).encode(),
        "NaN": codec.encode(with_nan, model.name),  # json.dumps writes the NaN token
        "overflowing float": template.replace(str(SENTINEL).encode(), b"1e400", 1),  # parses to infinity
        "empty": codec.encode(good[:0], model.name),
        "oversized": codec.encode(np.ones((1, 5 * 2**20)), model.name),  # over 16 MiB
    }


# A valid number a float model may accept (it is finite as a float): anything but a 5xx is right.
BIG_INTEGER = b"123456789012345678901234567890"  # beyond int64


def _chunked(body: bytes, size: int = 2**20) -> Iterator[bytes]:
    """The body as a stream: requests sends it chunked, with no Content-Length to refuse it by."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_runtime_keeps_the_contract_golden_rows_answered_bad_input_a_4xx(
        runtime_name: str, models: dict[str, LocalModel], runtime_envs: None, tmp_path: Path,
        no_new_servers: None) -> None:
    """One deployment per runtime, of a torch model (iris-logreg's parity is every smoke run's): its golden rows
    within the runtime's tolerance, then every bad body, then the golden rows again (it survived them)."""
    spec, model = load_runtime(runtime_name), models["digits-cnn"]
    with LocalTarget().deploy(spec, model, tmp_path) as deployment:
        assert 0 < deployment.startup_s < 180
        parity = check_parity(deployment.endpoint, model, spec.parity_tolerance(model.spec))
        assert parity.ok, f"{parity.error}; log {deployment.log_path}"
        assert deployment.rss_mb() > 30  # a server with a model loaded
        statuses = {}
        bodies = bad_bodies(spec.protocol, model)
        for case, body in bodies.items():
            response = requests.post(deployment.endpoint.predict_url, data=body,
                                     headers={"Content-Type": "application/json"}, timeout=60)
            statuses[case] = response.status_code
        streamed = _post_chunked(deployment.endpoint.predict_url, bodies["oversized"])
        if streamed is not None:  # None: the server closed the connection mid-body, which refuses it too
            statuses["oversized, chunked"] = streamed
        big = bodies["overflowing float"].replace(b"1e400", BIG_INTEGER, 1)
        big_status = requests.post(deployment.endpoint.predict_url, data=big,
                                   headers={"Content-Type": "application/json"}, timeout=60).status_code
        assert big_status < 500, f"{runtime_name} answered an integer beyond int64 with {big_status}"
        assert deployment.alive(), f"bad input killed {runtime_name}: log {deployment.log_path}"
        assert check_parity(deployment.endpoint, model, spec.parity_tolerance(model.spec)).ok
    known = KNOWN_DEVIATIONS.get(runtime_name, {})
    assert {case: status for case, status in statuses.items() if not 400 <= status < 500} == known, statuses


def _post_chunked(url: str, body: bytes) -> int | None:
    try:
        return requests.post(url, data=_chunked(body), headers={"Content-Type": "application/json"},
                             timeout=60).status_code
    except requests.ConnectionError:
        return None


@pytest.fixture(scope="module")
def fastapi_iris(models: dict[str, LocalModel], runtime_envs: None,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with LocalTarget().deploy(load_runtime("fastapi"), models["iris-logreg"],
                              tmp_path_factory.mktemp("logs")) as deployment:
        yield deployment


FASTAPI_BAD_BODIES = {
    "ragged": (b'{"instances": [[1, 2, 3, 4], [1, 2]]}', 422),
    "strings": (b'{"instances": [["a", "b", "c", "d"]]}', 422),
    "too many rows": (json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]] * 5000}).encode(), 422),
    "oversized": (b'{"instances": [[' + b"1.0," * (5 * 2**20) + b"1.0]]}", 413),
}


def test_fastapi_refuses_a_chunked_oversized_body_with_413(fastapi_iris: Deployment) -> None:
    """No Content-Length to refuse it by: the limit is counted as the body streams in (it was a 400)."""
    body = b'{"instances": [[' + b"1.0," * (5 * 2**20) + b"1.0]]}"
    assert _post_chunked(fastapi_iris.endpoint.predict_url, body) == 413


@pytest.mark.parametrize("case", list(FASTAPI_BAD_BODIES))
def test_fastapi_answers_each_bad_input_with_its_own_status(fastapi_iris: Deployment, case: str) -> None:
    body, expected = FASTAPI_BAD_BODIES[case]
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
    empty = {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64", "data": []}]}
    assert requests.post(f"{base}/v2/models/iris-logreg/infer", json=empty, timeout=5).status_code == 422
    beyond_int64 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [2**70, 1, 2, 3]}]}
    assert requests.post(f"{base}/v2/models/iris-logreg/infer", json=beyond_int64, timeout=5).status_code == 422
