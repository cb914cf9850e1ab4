"""The reference point for `bench calibrate`: plain Locust FastHttpUser, no servebench recording.

Its throughput is read from Locust's own request counter, which is fine for a count (only Locust's
percentiles are too coarse to report).
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task


class PlainUser(FastHttpUser):
    wait_time = constant(0)
    max_retries = 0
    concurrency = 1

    @task
    def post(self) -> None:
        self.client.post("/", data="{}", headers={"Content-Type": "application/json"})
