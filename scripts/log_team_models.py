"""Log and register the two example team models in MLflow, as a training job would, and write request rows.

    python scripts/log_team_models.py [--tracking-uri URI] [--rows rows.parquet]

Uses MLFLOW_TRACKING_URI (or --tracking-uri), else servebench's own store (.servebench/mlflow.db), and
prints the model URIs to pass to `bench ... --model`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import team_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else "
                        "servebench's own store)")
    parser.add_argument("--rows", type=Path, default=Path("rows.parquet"), help="where to write request rows")
    args = parser.parse_args()
    import mlflow

    from bench.models.registry import tracking_uri
    from bench.redact import redact_uri

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("team-models")
    churn = team_models.log_churn_pipeline()
    mlp = team_models.log_tensor_mlp()
    team_models.write_churn_rows(args.rows)
    print(f"tracking store: {redact_uri(uri)}")
    print(f"{churn.uri}  (scikit-learn Pipeline over a DataFrame; rows in {args.rows})")
    print(f"{mlp.uri}  (PyTorch MLP, float32 tensor)")


if __name__ == "__main__":
    main()
