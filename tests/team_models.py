"""Models a team would bring, logged and registered with MLflow the way a training job does it.

Nothing is downloaded: the data is generated with a seed. Used by the tests of `--model models:/...`
and by scripts/log_team_models.py (which a user can copy for the README's "Benchmark your own model").

- a scikit-learn Pipeline over a DataFrame with named, mixed-type columns (strings, booleans, integers,
  floats): one-hot encoding and gradient-boosted trees inside, string labels out (MLflow's default
  `predict`), logged with mlflow.sklearn.log_model's defaults (skops, inferred requirements);
- a PyTorch MLP (torch.nn.Sequential, no custom class) with a float32 tensor signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 7
CHURN_COLUMNS = ("plan", "region", "autopay", "support_calls", "tenure_months", "monthly_charges")
TENSOR_FEATURES = 16


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    uri: str  # models:/NAME/VERSION
    run_uri: str  # runs:/RUN_ID/model


def churn_frame(rows: int, seed: int = SEED) -> Any:
    """Customer rows as a team's feature table holds them: categorical strings, a boolean, integers, floats."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "plan": rng.choice(["basic", "plus", "premium", "family"], size=rows),
        "region": rng.choice(["north", "south", "east", "west", "central"], size=rows),
        "autopay": rng.random(rows) < 0.6,
        "support_calls": rng.poisson(1.5, size=rows).astype(np.int64),
        "tenure_months": rng.integers(1, 72, size=rows).astype(np.int64),
        "monthly_charges": np.round(rng.uniform(10.0, 120.0, size=rows), 2),
    })
    return frame


def churn_labels(frame: Any, seed: int = SEED) -> Any:
    rng = np.random.default_rng(seed + 1)
    score = (frame["support_calls"] * 0.6 - frame["tenure_months"] * 0.04 + frame["monthly_charges"] * 0.01
             - frame["autopay"] * 0.8 + (frame["plan"] == "basic") * 0.7 + rng.normal(0, 0.5, len(frame)))
    return np.where(score > 0, "churn", "stay")


def train_churn_pipeline(rows: int = 2000) -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = churn_frame(rows)
    encode = ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan", "region", "autopay"]),
    ], remainder="passthrough")
    pipeline = Pipeline([("encode", encode),
                         ("trees", HistGradientBoostingClassifier(max_iter=50, random_state=SEED))])
    return pipeline.fit(frame, churn_labels(frame)), frame


def train_tensor_mlp() -> Any:
    import torch

    torch.manual_seed(SEED)
    net = torch.nn.Sequential(torch.nn.Linear(TENSOR_FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3),
                              torch.nn.Softmax(dim=1))
    return net.eval()


def tensor_rows(rows: int, seed: int = SEED) -> Any:
    return np.random.default_rng(seed).normal(size=(rows, TENSOR_FEATURES)).astype(np.float32)


def _register(info: Any, name: str, run_id: str) -> Registered:
    import mlflow

    version = mlflow.register_model(info.model_uri, name)
    return Registered(name, str(version.version), f"models:/{name}/{version.version}", f"runs:/{run_id}/model")


def log_churn_pipeline(name: str = "team-churn") -> Registered:
    """Log and register the pipeline as a team's training job would (MLflow's defaults otherwise)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    pipeline, frame = train_churn_pipeline()
    example = frame.head(5)
    signature = infer_signature(example, pipeline.predict(example))
    trusted = ["sklearn._loss.link.Interval", "sklearn._loss.link.LogitLink",
               "sklearn._loss.loss.HalfBinomialLoss",
               "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
               "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    with mlflow.start_run(run_name=f"train-{name}") as run:
        info = mlflow.sklearn.log_model(pipeline, name="model", signature=signature, input_example=example,
                                        skops_trusted_types=trusted)
    return _register(info, name, run.info.run_id)


def log_tensor_mlp(name: str = "team-mlp") -> Registered:
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    net = train_tensor_mlp()
    example = tensor_rows(4)
    with torch.no_grad():
        output = net(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, output)
    with mlflow.start_run(run_name=f"train-{name}") as run:
        info = mlflow.pytorch.log_model(net, name="model", signature=signature, input_example=example)
    return _register(info, name, run.info.run_id)


def write_churn_rows(path: Path, rows: int = 500) -> Path:
    """A team's own request rows (another seed than training): Parquet keeps the column types."""
    frame = churn_frame(rows, seed=SEED + 100)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path
