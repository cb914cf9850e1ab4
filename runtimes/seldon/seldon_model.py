"""Seldon Core 1.x's Python microservice serving an MLflow model: the model class Seldon's wrapper calls
(MlflowModel.predict(X, names)), and, run as a script, the microservice itself (seldon-core-microservice).

Seldon's REST protocol: POST /api/v1.0/predictions {"data": {"ndarray": rows}} ->
{"data": {"names": [...], "ndarray": rows}, "meta": {}}. A model whose MLflow signature is a DataFrame (named,
typed columns) takes Seldon's jsonData in pandas' split orient, {"jsonData": {"columns": [names], "data":
[rows]}} (or one object per row, {"jsonData": [{...}, ...]}): seldon-core 1.18's wrapper hands jsonData as it
is to predict(), whose dict answer it sends back as jsonData: {"jsonData": {"predictions": [one per row]},
"meta": {}}. servebench_serving checks the columns and their types (a bad one is its 4xx).

Seldon serves it with gunicorn (workers x threads, Flask underneath) and a second gunicorn for metrics; gRPC is
off (--grpc-workers 0): the harness measures REST.

Seldon has no option for the address and binds 0.0.0.0, as a pod should; run as a script with BIND_HOST set
(runtime.yaml sets the harness's {host}), its gunicorn servers bind that address instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from servebench_serving import BadInput, ServedModel


class MlflowModel:
    """What seldon-core-microservice loads: load() once per gunicorn worker, then a call per request.

    predict_raw takes {"data": {"ndarray": rows}} itself, so that ragged or non-numeric rows get a 4xx
    (Seldon's own parsing turns them into a 500), and answers through Seldon's own response builder;
    anything else (a "tensor" payload, jsonData) goes back to Seldon's parsing and then predict().
    """

    def __init__(self) -> None:
        self.served: ServedModel | None = None

    def load(self) -> None:
        self.served = ServedModel()

    def _answer(self, rows: Any) -> Any:
        """The model's answer: an array for a tensor model, one JSON-ready prediction per row for a DataFrame
        model; a 4xx (SeldonMicroserviceException) for rows that break the signature."""
        from seldon_core.flask_utils import SeldonMicroserviceException

        if self.served is None:
            self.load()
        assert self.served is not None
        try:
            batch = self.served.rows(rows)
        except BadInput as exc:
            raise SeldonMicroserviceException(str(exc), status_code=exc.status, reason="BAD_INPUT") from None
        output = self.served.predict(batch)
        return self.served.answer(output) if self.served.is_frame else output

    def predict_raw(self, request: Any) -> Any:
        from seldon_core.user_model import SeldonNotImplementedError
        from seldon_core.utils import construct_response_json

        data = request.get("data") if isinstance(request, dict) else None
        if not isinstance(data, dict) or "ndarray" not in data:
            raise SeldonNotImplementedError("not an ndarray payload: Seldon parses it")
        return construct_response_json(self, False, request, self._answer(data["ndarray"]))

    def predict(self, X: Any, features_names: list[str] | None = None) -> Any:
        """Seldon's parsed payload: an array (a "tensor" payload), or jsonData as sent (a DataFrame model's
        split orient or records), answered as a dict so that Seldon sends it back as jsonData."""
        answer = self._answer(X)
        assert self.served is not None
        return {"predictions": answer} if self.served.is_frame else answer

    def class_names(self) -> list[str]:
        return []


def _bind(host: str) -> None:
    """Make Seldon's gunicorn applications (REST and metrics) bind `host` rather than 0.0.0.0."""
    from seldon_core import gunicorn_utils

    load_config = gunicorn_utils.StandaloneApplication.load_config

    def load_config_on_host(self: Any) -> None:
        load_config(self)
        self.cfg.set("bind", [address.replace("0.0.0.0:", f"{host}:") for address in self.cfg.bind])

    gunicorn_utils.StandaloneApplication.load_config = load_config_on_host  # type: ignore[method-assign]


if __name__ == "__main__":
    if os.environ.get("BIND_HOST"):
        _bind(os.environ["BIND_HOST"])
    from seldon_core.microservice import main

    sys.argv[0] = "seldon-core-microservice"
    main()
