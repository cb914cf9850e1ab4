"""KServe's Python model server (the `kserve` package) serving an MLflow model, the way KServe's own
sklearnserver serves a scikit-learn one: a kserve.Model whose load() reads the model and whose predict()
answers both of KServe's REST protocols, V1 ({"instances": rows} -> {"predictions": rows}) and the Open
Inference Protocol V2 (an InferRequest with one tensor).

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
from kserve.utils.utils import get_predict_input, get_predict_response
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
        try:
            rows = self.served.rows(get_predict_input(payload))
        except (BadInput, KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(str(exc) or "malformed request") from None  # KServe answers 400
        return get_predict_response(payload, self.served.predict(rows), self.name)


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
