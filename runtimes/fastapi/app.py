"""A hand-written FastAPI server for an MLflow model: what a team would write instead of a framework.

Endpoints:
- POST /predict (and KServe V1's /v1/models/{name}:predict): {"instances": rows} -> {"predictions": rows}
- Open Inference Protocol v2: /v2/health/{live,ready}, /v2/models/{name}[/ready], /v2/models/{name}/infer,
  so the same image can sit behind KServe as a custom predictor.

The model and what its signature says about inputs are servebench_serving's (runtimes/common, shared with
the other Python runtimes), loaded when the app is imported, so that the request bodies pydantic validates
follow the signature:
- a tensor model: "instances" is a list of equal-length lists of finite numbers; V2 takes one tensor;
- a DataFrame model (a column-based signature): "instances" is one object per row ({"plan": "basic",
  "autopay": true, ...}) or pandas' split orient ({"columns": [...], "data": [[...]]}); V2 takes one input
  per column ({"name": "plan", "shape": [n, 1], "datatype": "BYTES", "data": [...]}, BOOL, INT64, FP64...)
  and answers strings as BYTES. The columns and their types are checked by servebench_serving.

Malformed input always gets a 4xx: pydantic validates the envelope (and a tensor's shape and values),
servebench_serving a DataFrame's columns and values, bodies over MAX_BODY_BYTES get 413. Inference runs
inline on the event loop: with one worker on one CPU a thread pool only adds hops.
Settings (environment): MODEL_DIR (MLflow model folder), MODEL_NAME, MAX_ROWS (default 4096),
MAX_BODY_BYTES (default 16 MiB).

Test-only: SERVEBENCH_TEST_DELAY_MS (default 0) adds a fixed delay to every prediction (/predict, V1
and V2 infer), a synthetic regression for proving that `bench compare` catches a slowdown
(scripts/gate_benchmark.py). It spins on the CPU rather than sleeping, so the delay is exact (a sleep
overshoots by the kernel's timer slack) and behaves like slower inference: it holds the event loop and
the CPU. Never set it for a real measurement; the server announces it on stderr (its log) at startup.
"""

from __future__ import annotations

import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from servebench_serving import MAX_BODY_BYTES, MAX_ROWS, MODEL_DIR, MODEL_NAME, BadInput, ServedModel

TEST_DELAY_S = float(os.environ.get("SERVEBENCH_TEST_DELAY_MS", "0")) / 1000.0
if TEST_DELAY_S:
    print(f"servebench fastapi: TEST-ONLY delay of {TEST_DELAY_S * 1000:g} ms added to every prediction "
          "(SERVEBENCH_TEST_DELAY_MS)", file=sys.stderr, flush=True)

V2_TO_NUMPY = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "INT64": "int64", "INT32": "int32",
               "INT16": "int16", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}
NUMPY_TO_V2 = {numpy_type: v2 for v2, numpy_type in V2_TO_NUMPY.items()}

Finite = Annotated[float, Field(allow_inf_nan=False)]


# Loaded at import (in each uvicorn worker), before the routes below: their request bodies follow its signature.
MODEL = ServedModel(MODEL_DIR)


def predict_tensor(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if rows.ndim != 2 or (MODEL.n_features is not None and rows.shape[1] != MODEL.n_features):
        raise HTTPException(422, f"expected rows of {MODEL.n_features} features, got shape {list(rows.shape)}")
    if TEST_DELAY_S:
        _spin(TEST_DELAY_S)
    return np.asarray(MODEL.predict(rows.astype(MODEL.dtype, copy=False)))


def predict_frame(decode: Callable[[Any], Any], value: Any) -> Any:
    """Decode a DataFrame model's rows with servebench_serving (a 4xx naming the column when they break the
    signature), then predict: what pyfunc answers (an array, a Series, a DataFrame)."""
    try:
        frame = decode(value)
    except BadInput as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if TEST_DELAY_S:
        _spin(TEST_DELAY_S)
    return MODEL.predict(frame)


def _spin(seconds: float) -> None:
    """Busy-wait: exact to microseconds, and costs CPU like the slower inference it stands for."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


app = FastAPI(title=f"servebench fastapi: {MODEL_NAME}")


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over MAX_BODY_BYTES, declared or streamed (chunked). The body is
    read here, up to the limit, and replayed to the app: an error raised inside the app's own read would
    reach FastAPI's body parsing, which answers any exception there with a 400."""

    def __init__(self, inner: Callable[..., Awaitable[None]]) -> None:
        self.inner = inner

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _too_large(scope, receive, send)
            return
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                await _too_large(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)


async def _too_large(scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]],
                     send: Callable[..., Awaitable[None]]) -> None:
    response = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
    await response(scope, receive, send)


app.add_middleware(BodySizeLimit)


@app.exception_handler(RequestValidationError)
async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 without echoing the input: the default handler echoes it, which turns a NaN into a 500
    (NaN is not valid JSON) and sends megabytes back for an oversized batch."""
    errors = [{"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
              for error in exc.errors()[:10]]
    return JSONResponse({"detail": errors}, status_code=422)


class TensorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: Annotated[list[Annotated[list[Finite], Field(min_length=1)]], Field(min_length=1, max_length=MAX_ROWS)]


class FrameRequest(BaseModel):
    """Rows of named columns: one object per row, or pandas' split orient (checked by servebench_serving)."""

    model_config = ConfigDict(extra="forbid")
    instances: list[Any] | dict[str, Any]


PredictRequest = FrameRequest if MODEL.is_frame else TensorRequest


@app.post("/predict")
async def predict(request: PredictRequest) -> dict[str, Any]:
    if isinstance(request, FrameRequest):
        return {"predictions": MODEL.answer(predict_frame(MODEL.rows, request.instances))}
    rows = request.instances
    if len({len(row) for row in rows}) != 1:
        raise HTTPException(422, "all instances must have the same number of features")
    return {"predictions": predict_tensor(np.asarray(rows)).tolist()}


@app.post("/v1/models/{name}:predict")
async def predict_v1(name: str, request: PredictRequest) -> dict[str, Any]:
    _check_name(name)
    return await predict(request)


class V2Tensor(BaseModel):
    name: str
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=8)]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2Request(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    # a tensor model takes one tensor; a DataFrame model one input per column (servebench_serving checks them)
    inputs: Annotated[list[V2Tensor], Field(min_length=1, max_length=len(MODEL.columns or ()) + 1 if MODEL.is_frame
                                            else 1)]
    outputs: list[dict[str, Any]] | None = None


def _check_name(name: str) -> None:
    if name != MODEL_NAME:
        raise HTTPException(404, f"model '{name}' not found; this server serves '{MODEL_NAME}'")


def _decode_v2(tensor: V2Tensor) -> np.ndarray[Any, Any]:
    dtype = V2_TO_NUMPY.get(tensor.datatype)
    if dtype is None:
        raise HTTPException(422, f"unsupported datatype '{tensor.datatype}'")
    try:
        data = np.asarray(tensor.data, dtype=dtype).ravel()
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond the datatype's range
        raise HTTPException(422, f"data is not a flat or nested list of {tensor.datatype}") from None
    if data.size != math.prod(tensor.shape):
        raise HTTPException(422, f"shape {tensor.shape} needs {math.prod(tensor.shape)} values, got {data.size}")
    if data.size == 0:
        raise HTTPException(422, "an empty tensor: at least one row of at least one value")
    if tensor.shape[0] > MAX_ROWS:
        raise HTTPException(413, f"at most {MAX_ROWS} rows per request")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise HTTPException(422, "data holds NaN or infinity")
    return data.reshape(tensor.shape)


@app.post("/v2/models/{name}/infer")
async def infer_v2(name: str, request: V2Request) -> dict[str, Any]:
    _check_name(name)
    if MODEL.is_frame:
        answer = predict_frame(MODEL.v2_frame, [tensor.model_dump() for tensor in request.inputs])
        return {"model_name": MODEL_NAME, "id": request.id or str(uuid.uuid4()), "outputs": MODEL.v2_outputs(answer)}
    outputs = predict_tensor(_decode_v2(request.inputs[0]))
    return {
        "model_name": MODEL_NAME,
        "id": request.id or str(uuid.uuid4()),
        "outputs": [{
            "name": "output-0",
            "shape": list(outputs.shape),
            "datatype": NUMPY_TO_V2.get(str(outputs.dtype), "FP64"),
            "data": outputs.ravel().tolist(),
        }],
    }


@app.get("/v2/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@app.get("/v2/health/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}


@app.get("/v2/models/{name}/ready")
async def model_ready(name: str) -> dict[str, Any]:
    _check_name(name)
    return {"name": name, "ready": True}


@app.get("/v2/models/{name}")
async def model_metadata(name: str) -> dict[str, Any]:
    _check_name(name)
    if MODEL.columns is not None:
        inputs = [{"name": column.name, "datatype": column.v2_datatype, "shape": [-1, 1]} for column in MODEL.columns]
    else:
        inputs = [{"name": "input-0", "datatype": NUMPY_TO_V2.get(str(MODEL.dtype), "FP64"),
                   "shape": [-1, MODEL.n_features or -1]}]
    return {
        "name": MODEL_NAME,
        "platform": "mlflow",
        "inputs": inputs,
        "outputs": [{"name": "output-0", "datatype": "FP64", "shape": [-1, -1]}],
    }


@app.get("/v2")
async def server_metadata() -> dict[str, Any]:
    return {"name": "servebench-fastapi", "version": "1", "extensions": []}
