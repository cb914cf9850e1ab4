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
    """Base: JSON bodies. Subclasses define the request and response envelopes."""

    name: ClassVar[str] = ""
    content_type: ClassVar[str] = "application/json"

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
    for codec in (InstancesCodec(), MlflowInvocationsCodec(), OpenInferenceV2Codec(), SeldonCodec())
}


def codec_for(protocol: str) -> Codec:
    return CODECS[protocol]
