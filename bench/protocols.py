"""One codec per wire protocol: encode a batch of rows into a request body, decode predictions.

The load generator and the parity check both speak to runtimes only through these, so adding a runtime
that speaks a known protocol needs no harness change. Rows are a numeric tensor (a 2-D array) or a pandas
DataFrame with named, typed columns, which every codec sends with its column names and types: V2 one named
input per column (BYTES for strings, BOOL, INT64, FP64...), MLflow's dataframe_split, KServe V1 instances as
objects, Seldon's jsonData. Predictions come back as a 2-D array: numbers as float64, labels as strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

Array = npt.NDArray[Any]
Rows: TypeAlias = Union[Array, "pd.DataFrame"]


class ProtocolError(ValueError):
    """A response body that does not hold predictions in the protocol's shape."""


def as_predictions(value: Any, what: str) -> Array:
    """Predictions as a 2-D array: float64 when every value is a number, else strings (labels), compared
    exactly. A list of objects (a model answering with a DataFrame) becomes one column per key."""
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        keys = list(value[0])
        value = [[row.get(key) for key in keys] for row in value]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = _as_labels(value, what)
    else:
        if np.isnan(array).any():
            raise ProtocolError(f"{what} hold null or NaN")
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ProtocolError(f"{what} has {array.ndim} dimensions, expected 2")
    return array


def _as_labels(value: Any, what: str) -> Array:
    array = np.asarray(value, dtype=object)
    flat = array.ravel()
    if any(item is None or isinstance(item, list | dict) for item in flat):
        raise ProtocolError(f"{what} hold null or ragged values")
    return np.vectorize(str, otypes=[object])(array) if array.size else array


def is_frame(rows: Rows) -> bool:
    return not isinstance(rows, np.ndarray)


@dataclass(frozen=True)
class Column:
    """One DataFrame column as the wire sees it: its name, V2 datatype and values as JSON-ready Python values."""

    name: str
    datatype: str
    values: list[Any]


FRAME_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64", "O": "BYTES", "U": "BYTES", "S": "BYTES"}


def frame_columns(frame: pd.DataFrame) -> list[Column]:
    """Each column's values as Python natives (numpy scalars are not JSON), typed by its dtype: float32 and
    int32 columns keep their width, strings (object or pandas' string dtype) are BYTES."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        kind = getattr(series.dtype, "kind", "O")
        datatype = {"float32": "FP32", "int32": "INT32"}.get(str(series.dtype), FRAME_DATATYPES.get(kind, "BYTES"))
        columns.append(Column(str(name), datatype, series.tolist()))
    return columns


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = frame_columns(frame)
    return [dict(zip([c.name for c in columns], row, strict=True)) for row in zip(*(c.values for c in columns),
                                                                               strict=True)]


def frame_split(frame: pd.DataFrame) -> dict[str, Any]:
    """pandas' "split" orientation without the index: {"columns": [...], "data": [[row], ...]}."""
    columns = frame_columns(frame)
    return {"columns": [c.name for c in columns], "data": [list(row) for row in zip(*(c.values for c in columns),
                                                                                     strict=True)]}


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

    def encode(self, batch: Rows, model_name: str) -> bytes:
        raise NotImplementedError

    def decode(self, body: bytes) -> Array:
        raise NotImplementedError


class PredictionsCodec(Codec):
    """Rows in under one key, {"predictions": rows} out: the envelope KServe V1 and MLflow share."""

    rows_key: ClassVar[str] = ""
    bare_list_answers: ClassVar[bool] = False  # the server may answer with the rows alone

    def encode(self, batch: Rows, model_name: str) -> bytes:
        if isinstance(batch, np.ndarray):
            return json.dumps({self.rows_key: batch.tolist()}).encode()
        return json.dumps(self.encode_frame(batch)).encode()

    def encode_frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        raise NotImplementedError

    def decode(self, body: bytes) -> Array:
        payload = _load_json(body)
        if isinstance(payload, dict) and "predictions" in payload:
            return as_predictions(payload["predictions"], "predictions")
        if self.bare_list_answers and isinstance(payload, list):
            return as_predictions(payload, "predictions")
        raise ProtocolError("response has no 'predictions' key")


class InstancesCodec(PredictionsCodec):
    """KServe V1 / TF-Serving style: {"instances": rows} -> {"predictions": rows}."""

    name = "kserve-v1"
    rows_key = "instances"

    def encode_frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        return {"instances": frame_records(frame)}  # one object per row, as KServe's V1 protocol allows


class MlflowInvocationsCodec(PredictionsCodec):
    """MLflow's scoring server, tensor input: {"inputs": rows} -> {"predictions": rows} (or the bare rows)."""

    name = "mlflow-invocations"
    rows_key = "inputs"
    bare_list_answers = True

    def encode_frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        return {"dataframe_split": frame_split(frame)}


V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32"}


PANDAS_CONTENT = {"content_type": "pd"}  # MLServer's content type: the inputs are a DataFrame's columns
STRING_CONTENT = {"content_type": "str"}  # ...and a BYTES column holds UTF-8 strings


class OpenInferenceV2Codec(Codec):
    """Open Inference Protocol v2 (MLServer, KServe v2, Triton) over REST: one tensor in, or one named input per
    DataFrame column; the first output back."""

    name = "v2"

    def encode(self, batch: Rows, model_name: str) -> bytes:
        if not isinstance(batch, np.ndarray):
            return json.dumps({"parameters": PANDAS_CONTENT, "inputs": [
                {"name": column.name, "shape": [len(batch), 1], "datatype": column.datatype, "data": column.values,
                 **({"parameters": STRING_CONTENT} if column.datatype == "BYTES" else {})}
                for column in frame_columns(batch)]}).encode()
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
            data = as_predictions(first["data"], "outputs[0]").ravel()
            shape = [int(dim) for dim in first["shape"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed V2 output tensor: {exc}") from None
        if data.dtype == object and first.get("datatype") != "BYTES":
            raise ProtocolError(f"outputs[0] is {first.get('datatype')} but holds non-numeric data")
        return _shaped(data, shape)


def _shaped(data: Array, shape: list[int]) -> Array:
    if any(dim < 0 for dim in shape) or int(np.prod(shape)) != data.size:
        raise ProtocolError(f"V2 output shape {shape} does not match {data.size} values")
    return as_predictions(data.reshape(shape), "outputs[0]")


V2_CONTENTS = {"FP64": "fp64_contents", "FP32": "fp32_contents", "INT64": "int64_contents", "INT32": "int_contents",
               "BOOL": "bool_contents", "BYTES": "bytes_contents"}
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

    def encode(self, batch: Rows, model_name: str) -> bytes:
        from bench.v2_grpc_messages import ModelInferRequest

        request = ModelInferRequest(model_name=model_name)
        if not isinstance(batch, np.ndarray):
            request.parameters["content_type"].string_param = PANDAS_CONTENT["content_type"]
            for column in frame_columns(batch):
                tensor = request.inputs.add(name=column.name, datatype=column.datatype, shape=[len(batch), 1])
                values = [str(v).encode() for v in column.values] if column.datatype == "BYTES" else column.values
                if column.datatype == "BYTES":
                    tensor.parameters["content_type"].string_param = STRING_CONTENT["content_type"]
                getattr(tensor.contents, V2_CONTENTS[column.datatype]).extend(values)
            return bytes(request.SerializeToString())
        datatype = V2_DATATYPES.get(str(batch.dtype))
        if datatype is None:
            raise ValueError(f"no V2 datatype for {batch.dtype}")
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
        elif first.datatype == "BYTES":
            data = np.asarray([item.decode("utf-8", "replace") for item in first.contents.bytes_contents], dtype=object)
        else:
            field = V2_CONTENTS.get(first.datatype)
            if field is None:
                raise ProtocolError(f"output of datatype {first.datatype!r}")
            data = np.asarray(getattr(first.contents, field), dtype=np.float64)
        return _shaped(data, shape)


class SeldonCodec(Codec):
    """Seldon Core's REST protocol: {"data": {"ndarray": rows}} -> {"data": {"ndarray": rows, "names": ...}};
    a DataFrame goes as {"jsonData": {"columns": [...], "data": [...]}}, answered as
    {"jsonData": {"predictions": ...}}."""

    name = "seldon"

    def encode(self, batch: Rows, model_name: str) -> bytes:
        if not isinstance(batch, np.ndarray):
            return json.dumps({"jsonData": frame_split(batch)}).encode()
        return json.dumps({"data": {"ndarray": batch.tolist()}}).encode()

    def decode(self, body: bytes) -> Array:
        payload = _load_json(body)
        if isinstance(payload, dict) and "jsonData" in payload:
            answer = payload["jsonData"]
            if isinstance(answer, dict) and "predictions" in answer:
                answer = answer["predictions"]
            return as_predictions(answer, "jsonData")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise ProtocolError("response has no 'data' object")
        if "ndarray" in data:
            return as_predictions(data["ndarray"], "data.ndarray")
        tensor = data.get("tensor")
        if isinstance(tensor, dict) and "values" in tensor and "shape" in tensor:
            try:
                return as_predictions(np.asarray(tensor["values"], dtype=np.float64).reshape(tensor["shape"]),
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
