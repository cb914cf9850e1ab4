"""The locustfile servebench runs, in one of three modes (Locust monkey-patches the interpreter on import, so
the harness only ever loads it inside a Locust process).

- With SERVEBENCH_LOAD_PLAN (a JSON load plan written by bench.load.driver, as `bench run` does): the
  plan-driven users of bench.load.planned_user, open or closed loop, every request recorded raw. A plan
  with remote workers makes this process their master (bench.load.remote_master).
- With SERVEBENCH_REMOTE_WORKER (`bench worker`): the same users, the plan from the master's messages
  (bench.load.remote_worker).
- Without either (docker-compose.yml's Locust master and workers): the web-UI users of bench.load.web_user,
  users and spawn rate from the UI, runtime from SERVEBENCH_TARGETS.
"""

from __future__ import annotations

import os
from typing import Any

from locust import events

if os.environ.get("SERVEBENCH_LOAD_PLAN") or os.environ.get("SERVEBENCH_REMOTE_WORKER"):
    from bench.load.planned_user import ServebenchUser  # noqa: F401  (Locust collects the User classes here)

    def _remote_roles(environment: Any, **_kwargs: Any) -> None:
        """The master of remote workers, or a remote worker: each sets itself up on Locust's messages."""
        from locust.runners import MasterRunner, WorkerRunner

        from bench.load import planned_user

        generator = planned_user.PROCESS.generator
        if isinstance(environment.runner, MasterRunner) and generator is not None and generator.plan.remote_workers:
            from bench.load.remote_master import RemoteMaster

            planned_user.PROCESS.master_stops_workers = True
            RemoteMaster(environment, generator.plan, generator.headers)
        elif isinstance(environment.runner, WorkerRunner) and os.environ.get("SERVEBENCH_REMOTE_WORKER"):
            from bench.load.remote_worker import RemoteWorker

            RemoteWorker(environment)

    events.init.add_listener(_remote_roles)  # type: ignore[no-untyped-call]
else:
    from bench.load.web_user import WebUser  # noqa: F401
