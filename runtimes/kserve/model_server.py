"""KServe's Python model server (the `kserve` package) serving an MLflow model, the way KServe's own
sklearnserver serves a scikit-learn one: a kserve.Model whose load() reads the model and whose predict()
answers both of KServe's REST protocols, V1 ({"instances": rows} -> {"predictions": rows}) and the Open
Inference Protocol V2 (an InferRequest with one tensor).

A model whose MLflow signature is a DataFrame (named, typed columns) is decoded by servebench_serving rather
than by KServe's helpers (which build frames without checking the columns or their types): V1 rows are one
object per row ({"instances": [{"plan": "basic", "autopay": true, ...}]}) or pandas' split orient, V2 inputs
one per column ({"name": "plan", "shape": [n, 1], "datatype": "BYTES", "data": [...]}, BOOL, INT64, FP64...;
request parameters {"content_type": "pd"} as MLServer takes them). The answer is {"predictions": [one per row]}
for V1 and V2 outputs for V2 (strings as BYTES; a DataFrame answer as one output per column). A request that
breaks the signature (a missing or unknown column, a value of the wrong type) is KServe's 400 (InvalidInput),
as a bad tensor is.

kserve.ModelServer parses its own flags (--http_port, --workers, --enable_grpc...) from the command
line. It has no flag for the address: it binds 0.0.0.0, as a pod should. BIND_HOST (runtime.yaml sets
it to the harness's {host}, 127.0.0.1 locally) makes uvicorn bind that address instead.
"""

from __future__ import annotations

import os
from typing import Any

import kserve
import uvicorn
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid, get_predict_input, get_predict_response
from servebench_serving import MODEL_DIR, MODEL_NAME, BadInput, ServedModel

BIND_HOST = os.environ.get("BIND_HOST")


class MlflowModel(kserve.Model):
    """One MLflow model under KServe's data plane (V1 and V2 endpoints, readiness, metrics)."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.served: ServedModel | None = None

    def load(self) -> bool:
        self.served = ServedModel(self.model_dir)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        assert self.served is not None
        if self.served.is_frame:
            return self._predict_frame(payload)
        try:
            rows = self.served.rows(get_predict_input(payload))
        except (BadInput, KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(str(exc) or "malformed request") from None  # KServe answers 400
        return get_predict_response(payload, self.served.predict(rows), self.name)

    def _predict_frame(self, payload: Any) -> Any:
        """A DataFrame model: V1 rows or V2 columns decoded and checked by servebench_serving."""
        assert self.served is not None
        try:
            if isinstance(payload, InferRequest):
                frame = self.served.v2_frame([{"name": tensor.name, "shape": list(tensor.shape),
                                               "datatype": tensor.datatype, "data": tensor.data}
                                              for tensor in payload.inputs])
            elif isinstance(payload, dict):
                frame = self.served.rows(payload["instances"] if "instances" in payload else payload.get("inputs"))
            else:
                raise BadInput(f"unsupported payload {type(payload).__name__}")
        except BadInput as exc:
            raise InvalidInput(str(exc)) from None  # KServe answers 400
        answer = self.served.predict(frame)
        if isinstance(payload, dict):
            return {"predictions": self.served.answer(answer)}
        outputs = [InferOutput(name=output["name"], shape=output["shape"], datatype=output["datatype"],
                               data=output["data"]) for output in self.served.v2_outputs(answer)]
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=outputs)


def _bind(host: str) -> None:
    """Make every uvicorn server of this process bind `host` (kserve hard-codes 0.0.0.0)."""
    config_class = uvicorn.Config

    class HostConfig(config_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = host
            super().__init__(*args, **kwargs)

    uvicorn.Config = HostConfig  # type: ignore[misc]


if __name__ == "__main__":
    if BIND_HOST:
        _bind(BIND_HOST)
    model = MlflowModel(MODEL_NAME, MODEL_DIR)
    model.load()
    kserve.ModelServer().start([model])
