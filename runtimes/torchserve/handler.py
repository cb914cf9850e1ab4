"""A TorchServe handler serving the MLflow model (PyTorch and scikit-learn models alike: the pyfunc flavour
loads either), archived by torch-model-archiver at start (start.py).

KServe V1 envelope per request: {"instances": rows} -> {"predictions": rows}, where rows are lists of numbers
for a tensor model and one object per row ({"plan": "basic", "autopay": true, ...}) for a model whose signature
is a DataFrame (checked and typed by servebench_serving, which answers a bad one with a 4xx). A request without
a body (a GET) gets {"ready": true}, which is how readiness is probed (TorchServe's own /ping says Healthy
before any worker has loaded the model: the first answer came 4.5 s later). When TorchServe batches
(batchSize > 1), the rows of every well-formed request in the batch go through one predict call (one array, or
one DataFrame) and are split back; a malformed request gets its own 4xx without failing the others.
"""

from __future__ import annotations

import json
import os
from typing import Any

from servebench_serving import BadInput, ServedModel

# Loaded when TorchServe's worker imports this module, so that the worker (and /ping) is ready only once the
# model is: loaded on the first request instead, the first answer took 5 s after /ping said Healthy.
_served = ServedModel(os.environ["MODEL_DIR"])


def _rows(request: dict[str, Any]) -> Any:
    """The request's rows, decoded and checked: a 2-D array, or a DataFrame of the signature's columns."""
    payload = request.get("body", request.get("data"))
    if isinstance(payload, bytes | bytearray):  # TorchServe forwards a body it could not decode as JSON
        try:
            payload = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInput(f"body is not JSON: {exc}", status=400) from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadInput('expected {"instances": rows}')
    return _served.rows(payload["instances"])


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's entry point, called once per batch (with no data when TorchServe only initialises)."""
    if data is None:
        return None
    answers: list[Any] = [None] * len(data)
    good: list[tuple[int, Any]] = []
    for index, request in enumerate(data):
        if not request.get("body", request.get("data")):  # a GET, the harness's readiness probe: answered by
            answers[index] = {"ready": True}  # a worker, so only once one has loaded the model
            continue
        try:
            good.append((index, _rows(request)))
        except BadInput as exc:
            context.set_response_status(exc.status, str(exc), idx=index)
            answers[index] = {"error": str(exc)}
    if good:
        predictions = _served.answer(_served.predict(_served.join([rows for _, rows in good])))
        start = 0
        for index, rows in good:
            answers[index] = {"predictions": predictions[start:start + len(rows)]}
            start += len(rows)
    return answers
