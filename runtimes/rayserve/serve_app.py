"""Ray Serve (ray 2.60) serving the MLflow model: one deployment behind Serve's HTTP proxy.

`app` is what a Ray cluster runs (`serve run serve_app:app`, or a KubeRay RayService's serveConfigV2
importPath `serve_app:app`); run as a script, this file starts a local single-node Ray (the CPUs this
process may use, no dashboard) and serves `app` on BIND_HOST:HTTP_PORT until it is stopped.

KServe V1 envelope: POST / (any path) {"instances": rows} -> {"predictions": rows}; GET answers
{"ready": true} once a replica has loaded the model, which is what readiness means here. Rows are lists of
numbers for a tensor model, one object per row ({"plan": "basic", "autopay": true, ...}) for a model whose
signature is a DataFrame: servebench_serving decodes and checks either (a bad one is its 4xx) and makes the
answer JSON-ready (labels, probabilities, or one object per row for a pyfunc answering a DataFrame).
Knobs (environment): REPLICAS (num_replicas), REPLICA_CPUS (each replica actor's num_cpus).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ray import serve
from servebench_serving import MAX_BODY_BYTES, BadInput, ServedModel
from starlette.requests import Request
from starlette.responses import JSONResponse

REPLICAS = int(os.environ.get("REPLICAS", "1"))
REPLICA_CPUS = float(os.environ.get("REPLICA_CPUS", "1"))
MAX_ONGOING_REQUESTS = int(os.environ.get("MAX_ONGOING_REQUESTS", "5"))


@serve.deployment
class MlflowDeployment:
    """One replica: the model loaded once, a request answered per call (on the replica's event loop)."""

    def __init__(self) -> None:
        self.served = ServedModel()

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({"ready": True})
        try:
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise BadInput(f"request body over {MAX_BODY_BYTES} bytes", status=413)
            try:
                payload: Any = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadInput(f"body is not JSON: {exc}", status=400) from None
            if not isinstance(payload, dict) or "instances" not in payload:
                raise BadInput('expected {"instances": rows}')
            return JSONResponse({"predictions": self.served.predict_rows(payload["instances"])})
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)


app = MlflowDeployment.options(num_replicas=REPLICAS, max_ongoing_requests=MAX_ONGOING_REQUESTS,
                               ray_actor_options={"num_cpus": REPLICA_CPUS}).bind()


def _node_address() -> str | None:
    """The address Ray's node takes: the harness's bind address, but not a wildcard (in a pod the harness's
    {host} is 0.0.0.0, which no Ray node can be reached at: Ray finds the pod's own address then)."""
    address = os.environ.get("RAY_NODE_IP", "")
    return None if address in ("", "0.0.0.0", "::") else address


def main() -> None:
    """A local single-node Ray with as many CPUs as this process may use, then Serve on host:port."""
    import ray

    cpus = len(os.sched_getaffinity(0))
    if cpus < REPLICAS * REPLICA_CPUS:
        sys.exit(f"rayserve: {REPLICAS} replicas x {REPLICA_CPUS:g} CPUs each do not fit in this node's {cpus} "
                 "CPU(s): Ray would wait for resources forever")
    ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=os.environ.get("RAY_TEMP_DIR") or None,
             _node_ip_address=_node_address(),
             log_to_driver=False)
    quiet = {"enable_access_log": False, "log_level": "WARNING"}  # no access log, as for every runtime
    serve.start(http_options={"host": os.environ.get("BIND_HOST", "127.0.0.1"),
                              "port": int(os.environ.get("HTTP_PORT", "8000"))}, logging_config=quiet)
    serve.run(app, route_prefix="/", blocking=True, logging_config=quiet)


if __name__ == "__main__":
    main()
