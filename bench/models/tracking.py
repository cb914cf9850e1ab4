"""Which MLflow tracking store the harness talks to: MLFLOW_TRACKING_URI when set (a real server), else an
embedded SQLite store under the state folder, where the reference models are registered."""

from __future__ import annotations

import os

from bench.config import state_dir


def embedded_tracking_uri() -> str:
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_tracking_uri()
