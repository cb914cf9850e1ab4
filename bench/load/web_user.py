"""The locustfile's interactive mode: Locust's web UI (docker-compose.yml's master and workers).

Users and spawn rate come from the UI; each user sends predict requests back to back (closed loop) with
golden rows of the model, in the protocol of the runtime chosen by Host or the Runtime field (see
bench.load.interactive). Locust's own statistics are what the UI shows: fine for looking around, too
coarse to report (`bench run` records raw samples instead). Imported only inside a Locust process.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task

from bench.load.bodies import request_bodies
from bench.load.interactive import choose_target, load_rows, parse_targets
from bench.protocols import codec_for

TARGETS = parse_targets(os.environ.get("SERVEBENCH_TARGETS", ""))
MODEL_NAME = os.environ.get("SERVEBENCH_MODEL", "model")
ROWS_FILE = Path(os.environ.get("SERVEBENCH_ROWS", "/mnt/model/golden.npz"))
DISTINCT_BODIES = 64
REQUEST_TIMEOUT_S = 60.0


def _arguments(parser: Any, **_kwargs: Any) -> None:
    """Shown as fields in the web UI's start form; the master forwards their values to every worker."""
    default = os.environ.get("SERVEBENCH_RUNTIME") or next(iter(TARGETS))
    parser.add_argument("--runtime", choices=list(TARGETS), default=default,
                        help="servebench runtime to load (when Host is empty or not one of the runtimes)")
    parser.add_argument("--batch-size", type=int, default=1, help="rows per request")


events.init_command_line_parser.add_listener(_arguments)  # type: ignore[no-untyped-call]


@functools.cache
def _bodies(protocol: str, batch_size: int) -> list[bytes]:
    return request_bodies(load_rows(ROWS_FILE), protocol, MODEL_NAME, batch_size, DISTINCT_BODIES)


class WebUser(FastHttpUser):
    wait_time = constant(0)
    network_timeout = REQUEST_TIMEOUT_S
    connection_timeout = REQUEST_TIMEOUT_S
    max_retries = 0
    concurrency = 1

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        self.problem: str | None = None
        try:
            self.target = choose_target(TARGETS, environment.host, getattr(options, "runtime", None))
        except ValueError as exc:  # shown as a failure in the UI rather than a crashed spawn
            self.problem = str(exc)
            self.target = next(iter(TARGETS.values()))
        self.host = self.target.base_url
        super().__init__(environment)
        self.bodies = _bodies(self.target.protocol, max(1, int(getattr(options, "batch_size", 1) or 1)))
        self.headers = {"Content-Type": codec_for(self.target.protocol).content_type}
        self.sent = 0

    @task
    def predict(self) -> None:
        if self.problem is not None:
            self.environment.events.request.fire(request_type="POST", name="servebench target", response_time=0,
                                                 response_length=0, exception=LookupError(self.problem),
                                                 context={}, response=None)
            gevent.sleep(1.0)
            return
        body = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1
        with self.client.post(self.target.predict_path, data=body, headers=self.headers,  # type: ignore[arg-type]
                              name=f"{self.target.name} {self.target.predict_path}", catch_response=True) as response:
            status = int(response.status_code or 0)
            if 200 <= status < 300:
                response.success()
            elif status == 0:  # no response: connection refused or reset, timeout
                response.failure(repr(response.error))
            else:
                response.failure(f"HTTP {status}: {(response.text or '')[:200]}")
