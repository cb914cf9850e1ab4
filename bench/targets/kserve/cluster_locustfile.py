"""Locust inside the cluster (rendered into a ConfigMap by bench.targets.kserve.manifests.locust): closed-loop users
posting one fixed request body to one predictor Service.

Standalone on purpose (only Locust is in its image). For capacity exploration: its statistics are
Locust's own, rounded, and never reported by the harness.
"""

from __future__ import annotations

import os
from pathlib import Path

from locust import FastHttpUser, constant, task

BODY = Path(os.environ.get("SERVEBENCH_BODY_FILE", "/mnt/locust/body")).read_text()
HEADERS = {"Content-Type": os.environ.get("SERVEBENCH_CONTENT_TYPE", "application/json")}
PATH = os.environ.get("SERVEBENCH_PREDICT_PATH", "/")


class PredictorUser(FastHttpUser):
    wait_time = constant(0)
    max_retries = 0

    @task
    def predict(self) -> None:
        self.client.post(PATH, data=BODY, headers=HEADERS)
