"""The model's ONNX export served by onnxruntime behind a minimal ASGI app on uvicorn (uvloop, httptools).

No web framework: the point of this runtime is the cost of inference through onnxruntime, with as
little serving code as a team could write. KServe V1 envelope: POST /predict (and
/v1/models/<name>:predict) {"instances": rows} -> {"predictions": probabilities}; GET /v2/health/ready.

The ONNX file is the model.onnx that `bench models build` exports into the MLflow model's own folder
(checked against the golden outputs there), so this runtime needs neither MLflow, scikit-learn nor torch.
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
from servebench_serving import MAX_BODY_BYTES, MODEL_DIR, MODEL_NAME, BadInput, checked_rows

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ORT_DTYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32}


class OnnxModel:
    """One InferenceSession on the CPU, and the input it declares."""

    def __init__(self, path: str) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        declared = self.session.get_inputs()[0]
        self.input_name = declared.name
        self.dtype = np.dtype(ORT_DTYPES.get(declared.type, np.float32))
        width = declared.shape[1] if len(declared.shape) > 1 else None
        self.n_features = width if isinstance(width, int) else None

    def predict(self, value: Any) -> list[Any]:
        rows = checked_rows(value, self.n_features, self.dtype)
        probabilities = self.session.run(None, {self.input_name: rows})[-1]  # the last output: probabilities
        result: list[Any] = np.asarray(probabilities).tolist()
        return result


MODEL = OnnxModel(os.path.join(MODEL_DIR, "model.onnx"))
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
