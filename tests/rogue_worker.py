"""A worker that holds the run's token but sends far more samples than its share: what the master must cut off.

    python tests/rogue_worker.py HOST PORT ROWS

Speaks servebench's worker protocol itself over Locust's (HELLO, PROOF with $SERVEBENCH_WORKER_TOKEN), then,
once it has a plan, sends ROWS sample lines in batches and exits. Test code: it never runs in a real run.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from bench.load import remote_protocol as proto  # noqa: E402
from bench.load.worker_auth import TOKEN_ENV, new_nonce, proof  # noqa: E402

BATCH_ROWS = 5_000


class Idle(User):
    @task
    def nothing(self) -> None:
        gevent.sleep(1)


def main() -> None:
    host, port, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    token = os.environ[TOKEN_ENV]
    runner = Environment(user_classes=[Idle]).create_worker_runner(host, port)
    nonce = new_nonce()
    planned = Event()

    def on_challenge(environment: Any, msg: Any, **_kwargs: Any) -> None:
        runner.send_message(proto.PROOF, {"proof": proof(token, "worker", msg.data["nonce"], nonce)})

    def on_plan(environment: Any, msg: Any, **_kwargs: Any) -> None:
        planned.set()

    runner.register_message(proto.CHALLENGE, on_challenge)
    runner.register_message(proto.PLAN, on_plan)
    runner.register_message(proto.ABORT, lambda *_args, **_kwargs: os._exit(3))
    gevent.sleep(0.5)
    runner.send_message(proto.HELLO, {"nonce": nonce})
    if not planned.wait(30):
        sys.exit("no plan")
    line = f"{time.time():.6f},{time.time():.6f},1.0000,1.0000,200,10,0,0\n"
    for _ in range(0, rows, BATCH_ROWS):
        runner.send_message(proto.SAMPLES, {"rows": line * BATCH_ROWS})
        gevent.sleep(0.05)
    gevent.sleep(5)


if __name__ == "__main__":
    main()
