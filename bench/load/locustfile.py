"""The locustfile servebench runs, in one of two modes (Locust monkey-patches the interpreter on import, so
the harness only ever loads it inside a Locust process).

- With SERVEBENCH_LOAD_PLAN (a JSON load plan written by bench.load.driver, as `bench run` does): the
  plan-driven users of bench.load.planned_user, open or closed loop, every request recorded raw.
- Without it (docker-compose.yml's Locust master and workers): the web-UI users of bench.load.web_user,
  users and spawn rate from the UI, runtime from SERVEBENCH_TARGETS.
"""

from __future__ import annotations

import os

if os.environ.get("SERVEBENCH_LOAD_PLAN"):
    from bench.load.planned_user import ServebenchUser  # noqa: F401  (Locust collects the User classes here)
else:
    from bench.load.web_user import WebUser  # noqa: F401
