"""Wire-protocol codecs: exact round trips through the body a server would send, and loud decode errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bench.protocols import CODECS, V2_CONTENTS, Codec, ProtocolError, codec_for
from bench.v2_grpc_messages import MODEL_INFER, ModelInferRequest, ModelInferResponse

SHIPPED_CODECS = {"kserve-v1", "mlflow-invocations", "v2", "v2-grpc", "seldon"}


def _kserve_v1_response(request: dict[str, Any]) -> dict[str, Any]:
    return {"predictions": request["instances"]}


def _mlflow_response(request: dict[str, Any]) -> dict[str, Any]:
    return {"predictions": request["inputs"]}


def _v2_response(request: dict[str, Any]) -> dict[str, Any]:
    (tensor,) = request["inputs"]
    output = {"name": "output-0", "shape": tensor["shape"], "datatype": tensor["datatype"], "data": tensor["data"]}
    return {"model_name": "m", "id": "1", "outputs": [output]}


def _seldon_response(request: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"names": [], "ndarray": request["data"]["ndarray"]}, "meta": {}}


def _v2_grpc_response(body: bytes, raw: bool = False) -> bytes:
    """What a V2 gRPC server echoing its input answers: typed contents, or raw little-endian bytes."""
    request = ModelInferRequest()
    request.ParseFromString(body)
    (tensor,) = request.inputs
    response = ModelInferResponse(model_name=request.model_name, id="1")
    output = response.outputs.add(name="output-0", datatype=tensor.datatype, shape=list(tensor.shape))
    values = getattr(tensor.contents, V2_CONTENTS[tensor.datatype])
    if raw:
        kind = {"FP64": "<f8", "FP32": "<f4"}[tensor.datatype]
        response.raw_output_contents.append(np.asarray(list(values), dtype=kind).tobytes())
    else:
        getattr(output.contents, V2_CONTENTS[tensor.datatype]).extend(values)
    answer: bytes = response.SerializeToString()
    return answer


# What an echoing server of each protocol answers, built from the request body the codec encoded.
RESPONDERS: dict[str, Callable[[Any], Any]] = {
    "kserve-v1": _kserve_v1_response,
    "mlflow-invocations": _mlflow_response,
    "v2": _v2_response,
    "v2-grpc": _v2_grpc_response,
    "seldon": _seldon_response,
}


def _batch(dtype: str, shape: tuple[int, int]) -> np.ndarray:
    """Values with long binary expansions plus extremes of the dtype, so any lossy step shows."""
    info = np.finfo(dtype)
    values: np.ndarray = np.random.default_rng(7).standard_normal(shape).astype(dtype) / np.asarray(3, dtype=dtype)
    flat = values.reshape(-1)
    extremes = [-0.0, info.max, info.min, info.tiny, info.eps, 1 / 3]
    flat[: min(len(flat), len(extremes))] = np.asarray(extremes, dtype=dtype)[: len(flat)]
    return values


def _round_trip(codec: Codec, batch: np.ndarray) -> np.ndarray:
    if codec.transport == "grpc":
        return codec.decode(_v2_grpc_response(codec.encode(batch, "some-model")))
    request = json.loads(codec.encode(batch, "some-model"))
    body = json.dumps(RESPONDERS[codec.name](request)).encode()
    return codec.decode(body)


def test_the_shipped_codecs_are_registered_under_their_names() -> None:
    assert set(CODECS) == SHIPPED_CODECS
    for name, codec in CODECS.items():
        assert codec.name == name
        assert codec_for(name) is codec
        assert codec.content_type == ("application/grpc" if codec.transport == "grpc" else "application/json")


def test_every_codec_has_a_responder_in_this_file() -> None:
    assert set(RESPONDERS) == set(CODECS), "a new codec needs a round-trip responder here"


@pytest.mark.parametrize("shape", [(1, 4), (7, 3), (64, 64)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("protocol", sorted(CODECS))
def test_round_trip_is_exact(protocol: str, dtype: str, shape: tuple[int, int]) -> None:
    batch = _batch(dtype, shape)
    decoded = _round_trip(CODECS[protocol], batch)
    assert decoded.dtype == np.float64
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, batch.astype(np.float64), strict=True)
    np.testing.assert_array_equal(decoded.astype(dtype), batch, strict=True)
    assert np.signbit(decoded.reshape(-1)[0])  # -0.0 keeps its sign


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlflow_accepts_a_bare_list_of_predictions(dtype: str) -> None:
    batch = _batch(dtype, (5, 3))
    codec = CODECS["mlflow-invocations"]
    request = json.loads(codec.encode(batch, "m"))
    assert set(request) == {"inputs"}
    decoded = codec.decode(json.dumps(request["inputs"]).encode())
    np.testing.assert_array_equal(decoded, batch.astype(np.float64), strict=True)


@pytest.mark.parametrize(("protocol", "key"), [("kserve-v1", "instances"), ("mlflow-invocations", "inputs")])
def test_row_codecs_send_rows(protocol: str, key: str) -> None:
    batch = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert json.loads(CODECS[protocol].encode(batch, "m")) == {key: [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]}


@pytest.mark.parametrize(("dtype", "datatype"), [("float32", "FP32"), ("float64", "FP64")])
def test_v2_encode_sends_one_flat_tensor_with_shape_and_datatype(dtype: str, datatype: str) -> None:
    batch = _batch(dtype, (3, 5))
    request = json.loads(CODECS["v2"].encode(batch, "m"))
    assert set(request) == {"inputs"}
    (tensor,) = request["inputs"]
    assert tensor["datatype"] == datatype
    assert tensor["shape"] == [3, 5]
    assert isinstance(tensor["name"], str) and tensor["name"]
    data = tensor["data"]
    assert isinstance(data, list) and len(data) == 15
    assert all(isinstance(value, float) for value in data)  # flat: no nested rows
    np.testing.assert_array_equal(np.asarray(data, dtype=dtype), batch.ravel(), strict=True)


def test_v2_encode_single_row_keeps_the_batch_dimension() -> None:
    request = json.loads(CODECS["v2"].encode(np.zeros((1, 4), dtype=np.float32), "m"))
    assert request["inputs"][0]["shape"] == [1, 4]


def test_v2_encode_rejects_a_dtype_it_cannot_name() -> None:
    with pytest.raises(ValueError, match="no V2 datatype"):
        CODECS["v2"].encode(np.zeros((2, 2), dtype=np.float16), "m")


@pytest.mark.parametrize("protocol", ["kserve-v1", "mlflow-invocations"])
def test_a_flat_prediction_list_becomes_one_column(protocol: str) -> None:
    decoded = CODECS[protocol].decode(b'{"predictions": [0, 2, 1]}')
    np.testing.assert_array_equal(decoded, np.asarray([[0.0], [2.0], [1.0]]), strict=True)


# ---- decode errors --------------------------------------------------------------------------------

NOT_JSON = [b"", b"not json", b"<html>502 Bad Gateway</html>", b'{"predictions": [1, 2', b"\xff\xfe\x00"]


JSON_CODECS = sorted(name for name, codec in CODECS.items() if codec.transport == "http")


@pytest.mark.parametrize("body", NOT_JSON)
@pytest.mark.parametrize("protocol", JSON_CODECS)
def test_non_json_is_a_protocol_error(protocol: str, body: bytes) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        CODECS[protocol].decode(body)


ROW_BODIES_WITHOUT_PREDICTIONS = [{}, {"outputs": [[1.0]]}, {"error": "boom"}, "predictions", 3, None]


@pytest.mark.parametrize("payload", ROW_BODIES_WITHOUT_PREDICTIONS, ids=repr)
@pytest.mark.parametrize("protocol", ["kserve-v1", "mlflow-invocations"])
def test_missing_predictions_key_is_a_protocol_error(protocol: str, payload: Any) -> None:
    with pytest.raises(ProtocolError, match="predictions"):
        CODECS[protocol].decode(json.dumps(payload).encode())


def test_kserve_v1_rejects_a_bare_list() -> None:
    with pytest.raises(ProtocolError, match="no 'predictions' key"):
        CODECS["kserve-v1"].decode(b"[[1.0, 2.0]]")


BAD_PREDICTIONS = {  # strings are labels and objects a DataFrame's rows since schema 11 (tests/test_frame_codecs.py)
    "ragged": [[1.0, 2.0], [3.0]],
    "nulls": [[1.0, None]],
    "nested objects": [{"a": [1.0, 2.0]}],
    "three dimensions": [[[1.0]]],
    "scalar": 1.0,
}


@pytest.mark.parametrize("predictions", BAD_PREDICTIONS.values(), ids=BAD_PREDICTIONS.keys())
@pytest.mark.parametrize("protocol", ["kserve-v1", "mlflow-invocations"])
def test_non_numeric_or_misshapen_predictions_are_protocol_errors(protocol: str, predictions: Any) -> None:
    with pytest.raises(ProtocolError, match="predictions"):
        CODECS[protocol].decode(json.dumps({"predictions": predictions}).encode())


def _v2_body(**tensor: Any) -> bytes:
    return json.dumps({"outputs": [{"name": "o", "datatype": "FP64", **tensor}]}).encode()


BAD_V2_BODIES = {
    "no outputs": b'{"model_name": "m"}',
    "empty outputs": b'{"outputs": []}',
    "outputs not a list": b'{"outputs": {"data": [1.0], "shape": [1, 1]}}',
    "top level list": b"[1.0]",
    "tensor not an object": b'{"outputs": [5]}',
    "no data": _v2_body(shape=[1, 1]),
    "no shape": _v2_body(data=[1.0]),
    "too few values": _v2_body(shape=[2, 2], data=[1.0, 2.0, 3.0]),
    "too many values": _v2_body(shape=[1, 2], data=[1.0, 2.0, 3.0]),
    "non-numeric data": _v2_body(shape=[1, 2], data=["a", "b"]),
    "non-numeric shape": _v2_body(shape=["x", 2], data=[1.0, 2.0]),
    "shape not a list": _v2_body(shape=2, data=[1.0, 2.0]),
    "ragged data": _v2_body(shape=[2, 2], data=[[1.0, 2.0], [3.0]]),
    "three dimensions": _v2_body(shape=[1, 2, 2], data=[1.0, 2.0, 3.0, 4.0]),
    "scalar shape": _v2_body(shape=[], data=[1.0]),
}


@pytest.mark.parametrize("body", BAD_V2_BODIES.values(), ids=BAD_V2_BODIES.keys())
def test_malformed_v2_responses_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        CODECS["v2"].decode(body)


def test_v2_shape_mismatch_message_names_shape_and_count() -> None:
    with pytest.raises(ProtocolError, match=r"shape \[2, 2\] does not match 3 values"):
        CODECS["v2"].decode(_v2_body(shape=[2, 2], data=[1.0, 2.0, 3.0]))


def test_v2_decode_reshapes_flat_data_row_major() -> None:
    decoded = CODECS["v2"].decode(_v2_body(shape=[2, 3], data=[0, 1, 2, 3, 4, 5]))
    np.testing.assert_array_equal(decoded, np.arange(6, dtype=np.float64).reshape(2, 3), strict=True)




def test_v2_two_negative_dims_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        CODECS["v2"].decode(_v2_body(shape=[-2, -2], data=[1.0, 2.0, 3.0, 4.0]))


@pytest.mark.parametrize("protocol", sorted(CODECS))
def test_null_predictions_are_protocol_errors(protocol: str) -> None:
    body = _v2_body(shape=[1, 2], data=[None, 1.0]) if protocol == "v2" else b'{"predictions": [[null, 1.0]]}'
    with pytest.raises(ProtocolError):
        CODECS[protocol].decode(body)


def test_seldon_decodes_its_tensor_form_too() -> None:
    body = json.dumps({"data": {"names": [], "tensor": {"shape": [2, 2], "values": [0.25, 0.75, 1.0, 0.0]}}})
    np.testing.assert_array_equal(codec_for("seldon").decode(body.encode()), [[0.25, 0.75], [1.0, 0.0]])


@pytest.mark.parametrize("body", [b'{"data": {}}', b'{"status": {"code": 500}}',
                                  b'{"data": {"tensor": {"shape": [3]}}}',
                                  b'{"data": {"tensor": {"shape": [3], "values": [1, 2]}}}'])
def test_seldon_rejects_answers_without_predictions(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec_for("seldon").decode(body)


def test_v2_grpc_sends_the_model_name_and_one_typed_tensor() -> None:
    codec = codec_for("v2-grpc")
    assert codec.transport == "grpc" and codec.method == MODEL_INFER == "/inference.GRPCInferenceService/ModelInfer"
    request = ModelInferRequest()
    request.ParseFromString(codec.encode(np.array([[1.5, 2.0], [3.0, 4.0]]), "iris-logreg"))
    (tensor,) = request.inputs
    assert request.model_name == "iris-logreg" and tensor.name == "input-0"
    assert (tensor.datatype, list(tensor.shape)) == ("FP64", [2, 2])
    assert list(tensor.contents.fp64_contents) == [1.5, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_v2_grpc_reads_raw_output_contents_too(dtype: str) -> None:
    codec = codec_for("v2-grpc")
    batch = _batch(dtype, (5, 3))
    decoded = codec.decode(_v2_grpc_response(codec.encode(batch, "m"), raw=True))
    np.testing.assert_array_equal(decoded, batch.astype(np.float64), strict=True)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", ModelInferResponse(model_name="m").SerializeToString(),
                                  b"{\"outputs\": []}"], ids=["garbage", "no outputs", "json"])
def test_malformed_v2_grpc_answers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec_for("v2-grpc").decode(body)


def test_the_codecs_import_without_protobuf() -> None:
    """The Locust web UI's image (docker/locust) has no protobuf or grpc: what its locustfile imports (the
    codecs, the bodies, the target parsing) must load and encode without them."""
    import subprocess
    import sys

    probe = ("import sys; sys.modules['google.protobuf'] = None; sys.modules['grpc'] = None\n"
             "import numpy as np, bench.load.bodies, bench.load.interactive\n"
             "from bench.protocols import codec_for\n"
             "print(len(codec_for('v2').encode(np.ones((1, 4)), 'm')) > 0)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr[-800:]
