"""The model's ONNX export served by onnxruntime behind a minimal ASGI app on uvicorn (uvloop, httptools).

No web framework: the point of this runtime is the cost of inference through onnxruntime, with as
little serving code as a team could write. KServe V1 envelope: POST /predict (and
/v1/models/<name>:predict) {"instances": rows} -> {"predictions": [...]}; GET /v2/health/ready.

MODEL_DIR holds model.onnx, so this runtime needs neither MLflow, pandas, scikit-learn nor torch:
- a reference model: the MLflow model's own folder, where `bench models build` exported and checked it;
  rows of numbers in, the last output (probabilities) out;
- a team's model: the folder bench.models.onnx_export wrote beside the model's local copy (checked against
  the model's reference answers there), with servebench-onnx.json naming the inputs and the output that
  answers. A tensor model takes rows of numbers; a DataFrame model takes one JSON object per row,
  {"plan": "basic", "autopay": true, ...} (or pandas' split orient {"columns": [...], "data": [[...]]}), and
  each ONNX input gets its column as an [n, 1] array of its type. Labels are answered as strings.
A request that breaks the contract is a 4xx naming what is wrong (missing or unknown column, a value of the
wrong JSON type, NaN or infinity, too many rows), never a 500.
Settings (environment): MODEL_DIR, MODEL_NAME, ORT_THREADS (onnxruntime intra-op threads, default 1),
MAX_ROWS and MAX_BODY_BYTES (see servebench_serving).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import onnxruntime
from servebench_serving import MAX_BODY_BYTES, MAX_ROWS, MODEL_DIR, MODEL_NAME, BadInput, checked_rows

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ORT_DTYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32}
DESCRIPTION_FILE = "servebench-onnx.json"  # written by bench.models.onnx_export beside a team model's export
INPUT_DTYPES: dict[str, Any] = {"tensor(string)": object, "tensor(bool)": np.bool_, "tensor(int64)": np.int64,
                                "tensor(int32)": np.int32, "tensor(double)": np.float64, "tensor(float)": np.float32}
SPLIT_KEYS = {"columns", "data", "index"}  # pandas' split orient; an index, when sent, is ignored


class Column:
    """One input of a DataFrame model: its name, the JSON values it takes (kind) and its ONNX type."""

    def __init__(self, name: str, kind: str, onnx_type: str) -> None:
        self.name, self.kind, self.dtype = name, kind, np.dtype(INPUT_DTYPES[onnx_type])

    def values(self, values: list[Any]) -> np.ndarray[Any, Any]:
        """The column as an [n, 1] array of its ONNX type, or BadInput naming the column."""
        allowed = {"string": (str,), "boolean": (bool,), "integer": (int,), "number": (int, float)}[self.kind]
        for row, value in enumerate(values):
            if type(value) not in allowed:
                shown = "null" if value is None else type(value).__name__
                raise BadInput(f"column '{self.name}' holds {self.kind} values only (row {row} holds {shown})")
        if self.kind == "string":
            array = np.empty(len(values), dtype=object)
            array[:] = values
            return array.reshape(-1, 1)
        if self.kind == "boolean":
            return np.asarray(values, dtype=np.bool_).reshape(-1, 1)
        try:
            exact = np.asarray(values, dtype=np.int64 if self.kind == "integer" else np.float64)
        except OverflowError:
            raise BadInput(f"column '{self.name}' holds a number out of range") from None
        if self.kind == "number" and not np.isfinite(exact).all():
            raise BadInput(f"column '{self.name}' holds NaN or infinity")
        if self.dtype.kind == "i" and not np.iinfo(self.dtype).min <= exact.min() <= exact.max() <= np.iinfo(
                self.dtype).max:
            raise BadInput(f"column '{self.name}' holds an integer beyond {self.dtype}")
        with np.errstate(over="ignore"):
            array = exact.astype(self.dtype)
        if self.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadInput(f"column '{self.name}' holds a number beyond {self.dtype}")
        return array.reshape(-1, 1)


class OnnxModel:
    """One InferenceSession on the CPU, the input(s) it takes and the output that answers."""

    def __init__(self, folder: str) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
        options.inter_op_num_threads = 1
        path = os.path.join(folder, "model.onnx")
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        described = os.path.join(folder, DESCRIPTION_FILE)
        description: dict[str, Any] = {}
        if os.path.isfile(described):
            with open(described) as handle:
                description = json.load(handle)
        self.outputs: list[str] | None = [description["output"]] if description else None  # None: every output
        self.columns: list[Column] | None = None
        if description.get("input_kind") == "dataframe":
            self.columns = [Column(i["name"], i["kind"], i["type"]) for i in description["inputs"]]
            self.names = [column.name for column in self.columns]
            return
        declared = self.session.get_inputs()[0]
        self.input_name = declared.name
        self.dtype = np.dtype(ORT_DTYPES.get(declared.type, np.float32) if not description
                              else INPUT_DTYPES[description["inputs"][0]["type"]])
        width = declared.shape[1] if len(declared.shape) > 1 else None
        self.n_features = width if isinstance(width, int) else None

    def predict(self, value: Any) -> list[Any]:
        if self.columns is not None:
            feeds = self.frame(value)
        else:
            feeds = {self.input_name: checked_rows(value, self.n_features, self.dtype)}
        answer = self.session.run(self.outputs, feeds)[-1]  # the described output, else the last: probabilities
        result: list[Any] = np.asarray(answer).tolist()
        return result

    def frame(self, value: Any) -> dict[str, np.ndarray[Any, Any]]:
        """Each column's [n, 1] array from one object per row, or from {"columns": [...], "data": [[...]]}."""
        if isinstance(value, dict):
            if not {"columns", "data"} <= value.keys() or value.keys() - SPLIT_KEYS:
                raise BadInput('expected {"columns": [names], "data": [rows]} or a list of rows')
            names, data = value["columns"], value["data"]
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise BadInput('"columns" must be a list of column names')
            self.check_count(data)
            if not all(isinstance(row, list) and len(row) == len(names) for row in data):
                raise BadInput(f'every row of "data" must be a list of {len(names)} values, one per column')
            self.check_names(names)
            where = {name: index for index, name in enumerate(names)}
            columns = {name: [row[where[name]] for row in data] for name in self.names}
        else:
            self.check_count(value)
            if not all(isinstance(row, dict) for row in value):
                raise BadInput(f"every row must be an object with columns {', '.join(self.names)}")
            for row in value:
                self.check_names(list(row))
            columns = {name: [row[name] for row in value] for name in self.names}
        assert self.columns is not None
        return {column.name: column.values(columns[column.name]) for column in self.columns}

    def check_count(self, rows: Any) -> None:
        if not isinstance(rows, list) or not rows:
            raise BadInput(f"expected a non-empty list of rows, one object each with columns {', '.join(self.names)}")
        if len(rows) > MAX_ROWS:
            raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)

    def check_names(self, names: list[str]) -> None:
        """Every column once, none unknown (the export has no optional inputs)."""
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise BadInput(f"unknown column(s): {', '.join(map(str, unknown[:10]))}; the model takes "
                           f"{', '.join(self.names)}")
        if len(set(names)) != len(names):
            raise BadInput(f"column(s) sent twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
        missing = [name for name in self.names if name not in names]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")


MODEL = OnnxModel(MODEL_DIR)
PREDICT_PATHS = {"/predict", f"/v1/models/{MODEL_NAME}:predict"}
READY_PATHS = {"/v2/health/ready", "/v2/health/live", f"/v2/models/{MODEL_NAME}/ready"}


async def _respond(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    declared = dict(scope.get("headers") or []).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadInput(f"request body over {MAX_BODY_BYTES} bytes", status=413)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadInput(f"request body over {MAX_BODY_BYTES} bytes", status=413)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The whole server: predict, readiness, 404 for the rest (uvicorn runs it with --lifespan off)."""
    path, method = scope["path"], scope["method"]
    if path in READY_PATHS and method == "GET":
        await _respond(send, 200, {"ready": True})
    elif path in PREDICT_PATHS and method == "POST":
        try:
            try:
                request = json.loads(await _read_body(scope, receive))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadInput(f"body is not JSON: {exc}", status=400) from None
            if not isinstance(request, dict) or "instances" not in request:
                raise BadInput('expected {"instances": rows}')
            await _respond(send, 200, {"predictions": MODEL.predict(request["instances"])})
        except BadInput as exc:
            await _respond(send, exc.status, {"error": str(exc)})
    else:
        await _respond(send, 404, {"error": f"no route for {method} {path}"})
