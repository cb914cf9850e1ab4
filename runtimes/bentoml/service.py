"""A BentoML 1.4 service for an MLflow model: {"instances": rows} -> {"predictions": rows} at /predict.

The API is sync (the model is CPU-bound), so BentoML runs it on a thread pool of `threads` threads per
worker; without `threads` it would serve one request at a time. BENTOML_WORKERS and BENTOML_THREADS
(set by runtime.yaml) choose the pool sizes; MODEL_DIR is the MLflow model folder.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
import mlflow.pyfunc
import numpy as np
from pydantic import Field

MODEL_DIR = os.environ.get("MODEL_DIR", "/mnt/models")
MAX_ROWS = int(os.environ.get("MAX_ROWS", "4096"))

Finite = Annotated[float, Field(allow_inf_nan=False)]
Instances = Annotated[list[Annotated[list[Finite], Field(min_length=1)]], Field(min_length=1, max_length=MAX_ROWS)]


@bentoml.service(
    name="servebench-model",
    workers=int(os.environ.get("BENTOML_WORKERS", "1")),
    threads=int(os.environ.get("BENTOML_THREADS", "4")),
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},  # as uvicorn --no-access-log for the others
)
class ModelService:
    def __init__(self) -> None:
        self.model = mlflow.pyfunc.load_model(MODEL_DIR)
        schema = self.model.metadata.get_input_schema()
        tensor = schema.inputs[0] if schema is not None and schema.is_tensor_spec() else None
        self.dtype = np.dtype(tensor.type) if tensor is not None else np.dtype("float64")
        self.n_features = int(tensor.shape[1]) if tensor is not None and tensor.shape[1] > 0 else None

    @bentoml.api(route="/predict")
    def predict(self, instances: Instances) -> dict[str, Any]:
        rows = np.asarray(instances, dtype=self.dtype)
        if rows.ndim != 2 or (self.n_features is not None and rows.shape[1] != self.n_features):
            raise bentoml.exceptions.InvalidArgument(
                f"expected rows of {self.n_features} features, got shape {list(rows.shape)}"
            )
        return {"predictions": np.asarray(self.model.predict(rows)).tolist()}
