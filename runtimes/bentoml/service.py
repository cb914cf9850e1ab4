"""A BentoML 1.4 service for an MLflow model: {"instances": rows} -> {"predictions": rows} at /predict.

The API is sync (the model is CPU-bound), so BentoML runs it on a thread pool of `threads` threads per
worker; without `threads` it would serve one request at a time. BENTOML_WORKERS and BENTOML_THREADS
(set by runtime.yaml) choose the pool sizes; MODEL_DIR is the MLflow model folder. Loading the model,
checking rows and making answers JSON-ready are servebench_serving's (runtimes/common), shared with the
other Python runtimes.

What "instances" holds follows the model's signature, read (without loading the model) when the service is
defined, since BentoML takes the API's input type from its annotation: a tensor model's rows are lists of
finite numbers (a bad row is BentoML's 400, as it always was); a DataFrame model's rows are one object per
row ({"plan": "basic", "autopay": true, ...}) or pandas' split orient ({"columns": [...], "data": [...]}),
checked column by column by servebench_serving, a bad one answered with its own 4xx (422, 413 over MAX_ROWS).
"""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from pydantic import Field
from servebench_serving import MAX_ROWS, BadInput, ServedModel, signature_columns

MODEL_DIR = os.environ.get("MODEL_DIR", "/mnt/models")

Finite = Annotated[float, Field(allow_inf_nan=False)]
TensorInstances = Annotated[list[Annotated[list[Finite], Field(min_length=1)]],
                            Field(min_length=1, max_length=MAX_ROWS)]
FrameInstances = list[Any] | dict[str, Any]
Instances = FrameInstances if signature_columns(MODEL_DIR) is not None else TensorInstances


class Refused(bentoml.exceptions.BentoMLException):
    """A DataFrame request that breaks the signature, answered with BadInput's own status."""

    def __init__(self, exc: BadInput) -> None:
        super().__init__(str(exc))
        self.error_code = HTTPStatus(exc.status)


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
            if self.model.is_frame:
                raise Refused(exc) from None
            raise bentoml.exceptions.InvalidArgument(str(exc)) from None
        return {"predictions": self.model.answer(self.model.predict(rows))}
