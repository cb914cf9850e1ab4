"""A TorchServe handler serving the MLflow model (PyTorch and scikit-learn models alike: the pyfunc flavour
loads either), archived by torch-model-archiver at start (start.py).

KServe V1 envelope per request: {"instances": rows} -> {"predictions": rows}. When TorchServe batches
(batchSize > 1), the rows of every well-formed request in the batch go through one predict call and are
split back; a malformed request gets its own 4xx without failing the others.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from servebench_serving import BadInput, ServedModel

_served: ServedModel | None = None


def _rows(request: dict[str, Any]) -> np.ndarray[Any, Any]:
    payload = request.get("body", request.get("data"))
    if isinstance(payload, bytes | bytearray):  # TorchServe forwards a body it could not decode as JSON
        try:
            payload = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInput(f"body is not JSON: {exc}", status=400) from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadInput('expected {"instances": rows}')
    assert _served is not None
    return _served.rows(payload["instances"])


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's entry point: called once with no data to initialise, then once per batch."""
    global _served
    if _served is None:
        _served = ServedModel(os.environ["MODEL_DIR"])
    if data is None:
        return None
    answers: list[Any] = [None] * len(data)
    good: list[tuple[int, np.ndarray[Any, Any]]] = []
    for index, request in enumerate(data):
        try:
            good.append((index, _rows(request)))
        except BadInput as exc:
            context.set_response_status(exc.status, str(exc), idx=index)
            answers[index] = {"error": str(exc)}
    if good:
        predictions = _served.predict(np.concatenate([rows for _, rows in good]))
        start = 0
        for index, rows in good:
            answers[index] = {"predictions": predictions[start:start + len(rows)].tolist()}
            start += len(rows)
    return answers
