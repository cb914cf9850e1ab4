"""The reference models: deterministic training from datasets that ship inside scikit-learn.

Each model returns class probabilities, so parity compares real numbers rather than labels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.config import ModelSpec
from bench.errors import BenchError
from bench.protocols import Array

SEED = 20261125
GOLDEN_ROWS = 64
ONNX_FILE = "model.onnx"  # the ONNX export, inside the MLflow model's own artifact folder
ONNX_ATOL = 1e-6  # how far the ONNX export may differ from the reference (float32 nets; tree sums in ORT)
ONNX_OPSETS = {"": 17, "ai.onnx.ml": 3}
TORCH_NETS_FILE = Path(__file__).with_name("servebench_torch_nets.py")
TORCH_NETS_MODULE = "servebench_torch_nets"



def _reference(name: str, framework: str, dataset: str, description: str, n_features: int, n_classes: int,
               input_dtype: str, parity_atol: float) -> ModelSpec:
    return ModelSpec(name=name, framework=framework, description=description, parity_atol=parity_atol,
                     input_kind="tensor", flavours=("python_function", framework), dataset=dataset,
                     n_features=n_features, n_classes=n_classes, input_dtype=input_dtype)


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _reference("iris-logreg", "sklearn", "iris", "StandardScaler + LogisticRegression: tiny, overhead-bound",
                   4, 3, "float64", 1e-9),
        _reference("digits-rf", "sklearn", "digits", "RandomForest, 200 trees: compute-heavy sklearn",
                   64, 10, "float64", 1e-9),
        _reference("digits-mlp", "pytorch", "digits", "PyTorch MLP, normalisation inside the module",
                   64, 10, "float32", 1e-5),
        _reference("digits-cnn", "pytorch", "digits", "PyTorch small CNN on 8x8 images",
                   64, 10, "float32", 1e-5),
    )
}


def model_names() -> list[str]:
    return list(SPECS)


def get_spec(name: str) -> ModelSpec:
    if name not in SPECS:
        raise BenchError(f"unknown model '{name}'", hint=f"valid: {', '.join(SPECS)}, all")
    return SPECS[name]


def load_dataset(dataset: str | None, dtype: str) -> tuple[Array, Array]:
    """Features and labels of a dataset bundled with scikit-learn (no download)."""
    from sklearn.datasets import load_digits, load_iris

    if dataset is None:
        raise BenchError("a team's model has no bundled dataset", hint="its rows come from --data or its example")
    loader = {"iris": load_iris, "digits": load_digits}[dataset]
    bunch = loader()
    return np.asarray(bunch.data, dtype=dtype), np.asarray(bunch.target, dtype=np.int64)


def golden_inputs(spec: ModelSpec) -> Array:
    """A fixed, seeded sample of real rows: what every runtime must answer identically."""
    features, _ = load_dataset(spec.dataset, spec.input_dtype)
    rows = np.random.default_rng(SEED).choice(len(features), size=GOLDEN_ROWS, replace=False)
    return features[np.sort(rows)]


def torch_nets() -> ModuleType:
    """Import the nets file under its bare name, the name pickles will refer to inside runtimes."""
    if TORCH_NETS_MODULE in sys.modules:
        return sys.modules[TORCH_NETS_MODULE]
    spec = importlib.util.spec_from_file_location(TORCH_NETS_MODULE, TORCH_NETS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[TORCH_NETS_MODULE] = module
    spec.loader.exec_module(module)
    return module


def _train_iris_logreg(features: Array, labels: Array) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]).fit(
        features, labels
    )


def _train_digits_rf(features: Array, labels: Array) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, random_state=SEED % 2**31, n_jobs=1).fit(features, labels)


def _train_torch(net_class: str, features: Array, labels: Array, epochs: int) -> Any:
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order: the same weights on every machine
    try:
        x = torch.from_numpy(features)
        y = torch.from_numpy(labels)
        net = getattr(torch_nets(), net_class)(x.mean(dim=0), x.std(dim=0))
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), 64):
                batch = order[start : start + 64]
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(net.logits(x[batch]), y[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
        return net.eval()
    finally:
        torch.set_num_threads(previous_threads)


def _train_digits_mlp(features: Array, labels: Array) -> Any:
    return _train_torch("DigitsMLP", features, labels, epochs=30)


def _train_digits_cnn(features: Array, labels: Array) -> Any:
    return _train_torch("DigitsCNN", features, labels, epochs=20)


TRAINERS: dict[str, Callable[[Array, Array], Any]] = {
    "iris-logreg": _train_iris_logreg,
    "digits-rf": _train_digits_rf,
    "digits-mlp": _train_digits_mlp,
    "digits-cnn": _train_digits_cnn,
}


@dataclass(frozen=True)
class TrainedModel:
    spec: ModelSpec
    estimator: Any
    golden_inputs: Array
    golden_outputs: Array
    accuracy: float


def predict_reference(spec: ModelSpec, estimator: Any, inputs: Array) -> Array:
    """The in-process answer every runtime is held to (class probabilities as float64)."""
    if spec.framework == "sklearn":
        return np.asarray(estimator.predict_proba(inputs), dtype=np.float64)
    import torch

    with torch.no_grad():
        return np.asarray(estimator(torch.from_numpy(inputs)).numpy(), dtype=np.float64)


def train(spec: ModelSpec) -> TrainedModel:
    features, labels = load_dataset(spec.dataset, spec.input_dtype)
    estimator = TRAINERS[spec.name](features, labels)
    golden = golden_inputs(spec)
    accuracy = float((predict_reference(spec, estimator, features).argmax(axis=1) == labels).mean())
    return TrainedModel(spec, estimator, golden, predict_reference(spec, estimator, golden), accuracy)


def export_onnx(spec: ModelSpec, estimator: Any) -> bytes:
    """The model as ONNX, in the dtype of its input (scikit-learn models in double, as they run), with
    probabilities as its last output: skl2onnx for scikit-learn, torch.onnx (TorchScript exporter) for nets."""
    sample = golden_inputs(spec)[:1]
    if spec.framework == "sklearn":
        from skl2onnx import to_onnx

        exported = to_onnx(estimator, sample, options={"zipmap": False}, target_opset=ONNX_OPSETS)
        return bytes(exported.SerializeToString())
    import tempfile

    import torch

    with tempfile.TemporaryDirectory(prefix="servebench-onnx-") as folder:
        path = Path(folder) / ONNX_FILE
        torch.onnx.export(estimator, (torch.from_numpy(sample),), str(path), input_names=["input"],
                          output_names=["probabilities"],
                          dynamic_axes={"input": {0: "rows"}, "probabilities": {0: "rows"}},
                          opset_version=ONNX_OPSETS[""], dynamo=False)
        return path.read_bytes()


def predict_onnx(model: bytes, inputs: Array) -> Array:
    """Probabilities from an ONNX export, through onnxruntime on the CPU (its last output)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: inputs})[-1], dtype=np.float64)


def checked_onnx(trained: TrainedModel) -> bytes:
    """The ONNX export, held to the same golden outputs as every runtime (within ONNX_ATOL)."""
    model = export_onnx(trained.spec, trained.estimator)
    worst = float(np.max(np.abs(predict_onnx(model, trained.golden_inputs) - trained.golden_outputs)))
    if worst > ONNX_ATOL:
        raise BenchError(f"{trained.spec.name}: the ONNX export differs from the model by {worst:.3g} "
                         f"(tolerance {ONNX_ATOL:g})", hint="the exporter does not convert this model faithfully")
    return model


def pip_requirements(spec: ModelSpec) -> list[str]:
    """What a runtime needs to load the model, stated rather than inferred: MLflow's inference would list
    whatever the harness happened to import (psutil, rich...)."""
    import cloudpickle
    import sklearn
    import torch

    base = [f"numpy=={np.__version__}", f"cloudpickle=={cloudpickle.__version__}"]
    if spec.framework == "sklearn":
        return [*base, f"scikit-learn=={sklearn.__version__}"]
    return [*base, f"torch=={torch.__version__.split('+')[0]}"]


def fingerprint(spec: ModelSpec) -> str:
    """Everything that decides the trained weights: unchanged fingerprint, no retraining."""
    import sklearn
    import torch

    digest = hashlib.sha256()
    digest.update(_fingerprinted_fields(spec).encode())
    digest.update(inspect.getsource(TRAINERS[spec.name]).encode())
    if spec.framework == "pytorch":
        digest.update(inspect.getsource(_train_torch).encode())
        digest.update(TORCH_NETS_FILE.read_bytes())
        digest.update(torch.__version__.encode())
    digest.update(sklearn.__version__.encode())
    digest.update(f"{SEED}:{GOLDEN_ROWS}".encode())
    digest.update(inspect.getsource(export_onnx).encode() + f"{ONNX_OPSETS}:{_onnx_versions()}".encode())
    digest.update(" ".join(pip_requirements(spec)).encode())
    return digest.hexdigest()[:16]


def _fingerprinted_fields(spec: ModelSpec) -> str:
    """The reference spec as its fingerprint has always read it (ModelSpec's repr before it described teams'
    models too): new fields must not retrain and re-register unchanged models."""
    return (f"ModelSpec(name={spec.name!r}, framework={spec.framework!r}, dataset={spec.dataset!r}, "
            f"description={spec.description!r}, n_features={spec.n_features!r}, n_classes={spec.n_classes!r}, "
            f"input_dtype={spec.input_dtype!r}, parity_atol={spec.parity_atol!r})")


def _onnx_versions() -> str:
    from importlib.metadata import version

    return " ".join(f"{name}=={version(name)}" for name in ("onnx", "skl2onnx"))
