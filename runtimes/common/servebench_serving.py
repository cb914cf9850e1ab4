"""What every Python serving runtime of servebench shares: the MLflow model with what its signature says
about inputs, and one check of the rows a request carries.

Lives once (runtimes/common) so that each runtime's own file holds only what its framework needs. Each
runtime folder lists it under serving_code; locally it is found through PYTHONPATH={shared_dir}, and in
an image it is copied beside the runtime's own code. mlflow is imported only by load_model, so a runtime
that serves a derived artifact (ONNX) can use the row check without it.

A request that breaks the contract raises BadInput with the HTTP status it deserves (4xx), never a 500:
not a list of equal-length numeric rows, NaN or infinity, the wrong number of features, or over MAX_ROWS
rows. Settings (environment): MODEL_DIR (the MLflow model folder), MAX_ROWS (default 4096),
MAX_BODY_BYTES (default 16 MiB).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

MODEL_DIR = os.environ.get("MODEL_DIR", "/mnt/models")
MODEL_NAME = os.environ.get("MODEL_NAME", "model")
MAX_ROWS = int(os.environ.get("MAX_ROWS", "4096"))
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", str(16 * 1024 * 1024)))


class BadInput(ValueError):
    """A request the model cannot answer, and the status that says why (400 malformed, 413 too large,
    422 well-formed but wrong)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def checked_rows(value: Any, n_features: int | None, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The rows as a 2-D array of the model's dtype, or BadInput."""
    if isinstance(value, np.ndarray):
        rows = value
    else:
        if not isinstance(value, list) or not value:
            raise BadInput("expected a non-empty list of rows")
        if len(value) > MAX_ROWS:
            raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
        if not all(isinstance(row, list) and row for row in value):
            raise BadInput("every row must be a non-empty list of numbers")
        if len({len(row) for row in value}) != 1:
            raise BadInput("all rows must have the same number of features")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for row in value for x in row):
            raise BadInput("rows must hold numbers only")
        try:
            rows = np.asarray(value, dtype=np.float64)
        except (OverflowError, ValueError):
            raise BadInput("rows hold a number out of range") from None
    if rows.ndim != 2 or rows.shape[0] == 0 or (n_features is not None and rows.shape[1] != n_features):
        raise BadInput(f"expected rows of {n_features or 'some'} features, got shape {list(rows.shape)}")
    if len(rows) > MAX_ROWS:
        raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
    if rows.dtype.kind not in "iuf":
        raise BadInput(f"rows must be numeric, got {rows.dtype}")
    if rows.dtype.kind == "f" and not np.isfinite(rows).all():
        raise BadInput("rows hold NaN or infinity")
    return rows.astype(dtype, copy=False)


class ServedModel:
    """An MLflow pyfunc model and the input its signature declares (dtype and feature count)."""

    def __init__(self, model_dir: str = MODEL_DIR) -> None:
        import mlflow.pyfunc

        self.pyfunc = mlflow.pyfunc.load_model(model_dir)
        schema = self.pyfunc.metadata.get_input_schema()
        tensor = schema.inputs[0] if schema is not None and schema.is_tensor_spec() else None
        self.dtype: np.dtype[Any] = np.dtype(tensor.type) if tensor is not None else np.dtype("float64")
        shape = tensor.shape if tensor is not None else (-1, -1)
        self.n_features = int(shape[1]) if len(shape) > 1 and shape[1] > 0 else None

    def rows(self, value: Any) -> np.ndarray[Any, Any]:
        return checked_rows(value, self.n_features, self.dtype)

    def predict(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self.pyfunc.predict(rows))

    def predict_rows(self, value: Any) -> list[Any]:
        """Check, predict, and answer as JSON-ready nested lists."""
        result: list[Any] = self.predict(self.rows(value)).tolist()
        return result
