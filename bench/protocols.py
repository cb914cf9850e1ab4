"""One codec per wire protocol: encode a batch of rows into a request body, decode predictions.

The load generator and the parity check both speak to runtimes only through these, so adding a runtime
that speaks a known protocol needs no harness change.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


class ProtocolError(ValueError):
    """A response body that does not hold predictions in the protocol's shape."""


def _as_matrix(value: Any, what: str) -> Array:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what} is not numeric: {exc}") from None
    if np.isnan(array).any():
        raise ProtocolError(f"{what} hold null or NaN")
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ProtocolError(f"{what} has {array.ndim} dimensions, expected 2")
    return array


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"response is not JSON: {exc}") from None


class Codec:
    """Base: JSON bodies over HTTP. Subclasses define the request and response envelopes; a codec for a
    gRPC protocol sets `transport` and the `method` its bodies are sent to."""

    name: ClassVar[str] = ""
    content_type: ClassVar[str] = "application/json"
    transport: ClassVar[str] = "http"  # or "grpc": the body is a serialised protobuf message
    method: ClassVar[str] = ""  # gRPC: the method path every request goes to

    def encode(self, batch: Array, model_name: str) -> bytes:
        raise NotImplementedError

    def decode(self, body: bytes) -> Array:
        raise NotImplementedError


class PredictionsCodec(Codec):
    """Rows in under one key, {"predictions": rows} out: the envelope KServe V1 and MLflow share."""

    rows_key: ClassVar[str] = ""
    bare_list_answers: ClassVar[bool] = False  # the server may answer with the rows alone

    def encode(self, batch: Array, model_name: str) -> bytes:
        return json.dumps({self.rows_key: batch.tolist()}).encode()

    def decode(self, body: bytes) -> Array:
        payload = _load_json(body)
        if isinstance(payload, dict) and "predictions" in payload:
            return _as_matrix(payload["predictions"], "predictions")
        if self.bare_list_answers and isinstance(payload, list):
            return _as_matrix(payload, "predictions")
        raise ProtocolError("response has no 'predictions' key")


class InstancesCodec(PredictionsCodec):
    """KServe V1 / TF-Serving style: {"instances": rows} -> {"predictions": rows}."""

    name = "kserve-v1"
    rows_key = "instances"


class MlflowInvocationsCodec(PredictionsCodec):
    """MLflow's scoring server, tensor input: {"inputs": rows} -> {"predictions": rows} (or the bare rows)."""

    name = "mlflow-invocations"
    rows_key = "inputs"
    bare_list_answers = True


V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32"}


class OpenInferenceV2Codec(Codec):
    """Open Inference Protocol v2 (MLServer, KServe v2, Triton) over REST: one tensor in, one out."""

    name = "v2"

    def encode(self, batch: Array, model_name: str) -> bytes:
        datatype = V2_DATATYPES.get(str(batch.dtype))
        if datatype is None:
            raise ValueError(f"no V2 datatype for {batch.dtype}")
        tensor = {
            "name": "input-0",
            "shape": list(batch.shape),
            "datatype": datatype,
            "data": batch.ravel().tolist(),
        }
        return json.dumps({"inputs": [tensor]}).encode()

    def decode(self, body: bytes) -> Array:
        payload = _load_json(body)
        outputs = payload.get("outputs") if isinstance(payload, dict) else None
        if not outputs or not isinstance(outputs, list):
            raise ProtocolError("response has no 'outputs' list")
        first = outputs[0]
        try:
            data = np.asarray(first["data"], dtype=np.float64)
            shape = [int(dim) for dim in first["shape"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed V2 output tensor: {exc}") from None
        if any(dim < 0 for dim in shape) or int(np.prod(shape)) != data.size:
            raise ProtocolError(f"V2 output shape {shape} does not match {data.size} values")
        return _as_matrix(data.reshape(shape), "outputs[0]")


V2_CONTENTS = {"FP64": "fp64_contents", "FP32": "fp32_contents", "INT64": "int64_contents", "INT32": "int_contents"}
RAW_DTYPES = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4"}


class OpenInferenceV2GrpcCodec(Codec):
    """Open Inference Protocol v2 over gRPC (MLServer, KServe's model server): the same tensor as the REST
    codec, as a ModelInferRequest; the answer's first output from typed contents or raw bytes."""

    name = "v2-grpc"
    content_type = "application/grpc"
    transport = "grpc"
    method = "/inference.GRPCInferenceService/ModelInfer"
    # protobuf is imported when the codec is used, not when this module is: the Locust web UI's image
    # (docker/locust) imports the codecs and speaks HTTP only

    def encode(self, batch: Array, model_name: str) -> bytes:
        from bench.v2_grpc_messages import ModelInferRequest

        datatype = V2_DATATYPES.get(str(batch.dtype))
        if datatype is None:
            raise ValueError(f"no V2 datatype for {batch.dtype}")
        request = ModelInferRequest(model_name=model_name)
        tensor = request.inputs.add(name="input-0", datatype=datatype, shape=list(batch.shape))
        getattr(tensor.contents, V2_CONTENTS[datatype]).extend(batch.ravel().tolist())
        body: bytes = request.SerializeToString()
        return body

    def decode(self, body: bytes) -> Array:
        from google.protobuf.message import DecodeError

        from bench.v2_grpc_messages import ModelInferResponse

        response = ModelInferResponse()
        try:
            response.ParseFromString(body)
        except DecodeError as exc:
            raise ProtocolError(f"response is not a ModelInferResponse: {exc}") from None
        if not response.outputs:
            raise ProtocolError("response has no outputs")
        first = response.outputs[0]
        shape = [int(dim) for dim in first.shape]
        if response.raw_output_contents:
            kind = RAW_DTYPES.get(first.datatype)
            if kind is None:
                raise ProtocolError(f"raw output of datatype {first.datatype!r}")
            data = np.frombuffer(response.raw_output_contents[0], dtype=kind).astype(np.float64)
        else:
            field = V2_CONTENTS.get(first.datatype)
            if field is None:
                raise ProtocolError(f"output of datatype {first.datatype!r}")
            data = np.asarray(getattr(first.contents, field), dtype=np.float64)
        if any(dim < 0 for dim in shape) or int(np.prod(shape)) != data.size:
            raise ProtocolError(f"V2 output shape {shape} does not match {data.size} values")
        return _as_matrix(data.reshape(shape), "outputs[0]")


class SeldonCodec(Codec):
    """Seldon Core's REST protocol: {"data": {"ndarray": rows}} -> {"data": {"ndarray": rows, "names": ...}}."""

    name = "seldon"

    def encode(self, batch: Array, model_name: str) -> bytes:
        return json.dumps({"data": {"ndarray": batch.tolist()}}).encode()

    def decode(self, body: bytes) -> Array:
        payload = _load_json(body)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise ProtocolError("response has no 'data' object")
        if "ndarray" in data:
            return _as_matrix(data["ndarray"], "data.ndarray")
        tensor = data.get("tensor")
        if isinstance(tensor, dict) and "values" in tensor and "shape" in tensor:
            try:
                return _as_matrix(np.asarray(tensor["values"], dtype=np.float64).reshape(tensor["shape"]),
                                  "data.tensor")
            except (TypeError, ValueError) as exc:
                raise ProtocolError(f"malformed Seldon tensor: {exc}") from None
        raise ProtocolError("response data holds neither 'ndarray' nor 'tensor'")


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (InstancesCodec(), MlflowInvocationsCodec(), OpenInferenceV2Codec(), OpenInferenceV2GrpcCodec(),
                  SeldonCodec())
}


def codec_for(protocol: str) -> Codec:
    return CODECS[protocol]
