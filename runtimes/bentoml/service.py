"""A BentoML 1.4 service for an MLflow model: {"instances": rows} -> {"predictions": rows} at /predict.

The API is sync (the model is CPU-bound), so BentoML runs it on a thread pool of `threads` threads per
worker; without `threads` it would serve one request at a time. BENTOML_WORKERS and BENTOML_THREADS
(set by runtime.yaml) choose the pool sizes; MODEL_DIR is the MLflow model folder. Loading the model and
checking rows are servebench_serving's (runtimes/common), shared with the other Python runtimes.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
from pydantic import Field
from servebench_serving import MAX_ROWS, BadInput, ServedModel

MODEL_DIR = os.environ.get("MODEL_DIR", "/mnt/models")

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
        self.model = ServedModel(MODEL_DIR)

    @bentoml.api(route="/predict")
    def predict(self, instances: Instances) -> dict[str, Any]:
        try:
            rows = self.model.rows(instances)  # ragged rows, the wrong width: a 400, not numpy's 500
        except BadInput as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from None
        return {"predictions": self.model.predict(rows).tolist()}
