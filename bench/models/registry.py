"""Log and register the reference models in MLflow, and keep a local copy of each version.

Every runtime serves the same local copy of a registered model version (as KServe's storageUri would),
with the golden inputs and reference outputs stored beside it and as run artifacts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import ModelSpec, state_dir
from bench.errors import BenchError
from bench.models import catalog
from bench.models.request_bodies import BODIES_FILE, is_bodies_folder
from bench.models.team import ModelFacts, read_facts, read_prepared
from bench.models.tracking import embedded_tracking_uri as embedded_tracking_uri
from bench.models.tracking import tracking_uri as tracking_uri
from bench.models.trust import check_artifact, content_hash, record_artifact
from bench.protocols import Array, Rows

MODELS_EXPERIMENT = "servebench-models"
FINGERPRINT_TAG = "servebench.fingerprint"
GOLDEN_ARTIFACT = "golden"


def artifact_root() -> str:
    return (state_dir() / "mlartifacts").as_uri()


def _client() -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI itself, so compare URIs rather than test the variable:
    # only the embedded store gets a project-local artifact root (a server keeps its own artifact store).
    location = artifact_root() if tracking_uri() == embedded_tracking_uri() else None
    return str(client.create_experiment(name, artifact_location=location))


@dataclass(frozen=True)
class LocalModel:
    """A model version materialised on disk for runtimes to load, with the rows every runtime must answer
    like the reference does: a reference model (trained and registered here) or a team's (bench.models.team)."""

    spec: ModelSpec
    version: str
    fingerprint: str  # a reference model's training fingerprint; a team's model's content hash
    model_dir: Path
    golden_inputs: Rows
    golden_outputs: Array
    rows_file: Path | None = None  # the rows the load draws from; None: the reference model's dataset
    facts: ModelFacts | None = None  # a team's model: where it came from and what its MLmodel says
    bodies_file: Path | None = None  # a team's own request bodies (JSONL), sent as they are; answers not compared

    @property
    def name(self) -> str:
        return self.spec.name


def local_root(name: str) -> Path:
    return state_dir() / "models" / name


def _local_copy(name: str, fingerprint: str) -> Path:
    return local_root(name) / fingerprint


def _read_local(spec: ModelSpec, folder: Path) -> LocalModel | None:
    meta_file = folder / "servebench.json"
    if not meta_file.is_file() or not (folder / "model" / "MLmodel").is_file():
        return None
    meta = json.loads(meta_file.read_text())
    check_artifact(tracking_uri(), str(meta["model_uri"]), _copy_digest(folder))
    with np.load(folder / "golden.npz") as golden:
        inputs, outputs = golden["inputs"], golden["outputs"]
    return LocalModel(spec, str(meta["version"]), str(meta["fingerprint"]), folder / "model", inputs, outputs)


def _copy_digest(folder: Path) -> str:
    """The model's files and the golden arrays' values (np.savez stamps the time into its zip: not the file)."""
    digest = hashlib.sha256(content_hash(folder / "model").encode())
    with np.load(folder / "golden.npz") as golden:
        for name in ("inputs", "outputs"):
            array = np.ascontiguousarray(golden[name])
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _write_local(folder: Path, version: str, fingerprint: str, model_uri: str, golden_dir: Path,
                 registered_here: bool) -> None:
    """Download the registered version and its golden files, check them against what was recorded (or record
    them: a version registered here just now), then mark the copy complete."""
    import mlflow

    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staging / "model"))
        with np.load(golden_dir / "golden.npz") as golden:
            np.savez(staging / "golden.npz", inputs=golden["inputs"], outputs=golden["outputs"])
        digest = _copy_digest(staging)
        (record_artifact if registered_here else check_artifact)(tracking_uri(), model_uri, digest)
        (staging / "servebench.json").write_text(
            json.dumps({"version": version, "fingerprint": fingerprint, "model_uri": model_uri})
        )
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _find_version(client: Any, name: str, fingerprint: str) -> Any | None:
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception:  # registry has no such model yet
        return None
    matching = [v for v in versions if v.tags.get(FINGERPRINT_TAG) == fingerprint]
    return max(matching, key=lambda v: int(v.version)) if matching else None


def _log_and_register(client: Any, trained: catalog.TrainedModel, fingerprint: str, golden_dir: Path) -> Any:
    import mlflow
    from mlflow.models import infer_signature

    spec = trained.spec
    mlflow.set_experiment(experiment_id=_experiment_id(client, MODELS_EXPERIMENT))
    output_dtype = np.float32 if spec.framework == "pytorch" else np.float64
    signature = infer_signature(trained.golden_inputs, trained.golden_outputs.astype(output_dtype))
    example = trained.golden_inputs[:4]
    with mlflow.start_run(run_name=f"train-{spec.name}") as run:
        mlflow.log_params({"model": spec.name, "framework": spec.framework, "dataset": spec.dataset,
                           "seed": catalog.SEED, "golden_rows": len(trained.golden_inputs)})
        mlflow.log_metric("train_accuracy", trained.accuracy)
        mlflow.set_tag(FINGERPRINT_TAG, fingerprint)
        if spec.framework == "sklearn":
            import mlflow.sklearn

            info = mlflow.sklearn.log_model(
                trained.estimator, name="model", signature=signature, input_example=example,
                pyfunc_predict_fn="predict_proba", serialization_format="cloudpickle",
                pip_requirements=catalog.pip_requirements(spec),
            )
        else:
            import mlflow.pytorch

            info = mlflow.pytorch.log_model(
                trained.estimator, name="model", signature=signature, input_example=example,
                code_paths=[str(catalog.TORCH_NETS_FILE)], pip_requirements=catalog.pip_requirements(spec),
            )
        onnx_file = golden_dir / catalog.ONNX_FILE  # a derived artifact, inside the model's own folder
        onnx_file.write_bytes(catalog.checked_onnx(trained))
        client.log_model_artifact(info.model_id, str(onnx_file))
        onnx_file.unlink()
        mlflow.log_artifacts(str(golden_dir), artifact_path=GOLDEN_ARTIFACT)
        version = mlflow.register_model(info.model_uri, spec.name, tags={FINGERPRINT_TAG: fingerprint})
        client.set_model_version_tag(spec.name, version.version, FINGERPRINT_TAG, fingerprint)
        client.set_registered_model_tag(spec.name, "servebench.framework", spec.framework)
        client.update_model_version(spec.name, version.version, description=spec.description)
        del run
    return version


Progress = Callable[[str], None]


def ensure_model(spec: ModelSpec, say: Progress = lambda _msg: None) -> tuple[LocalModel, str]:
    """Train, log and register the model unless its fingerprint is already registered; returns the
    local copy and what was done ('cached', 'downloaded' or 'trained')."""
    fingerprint = catalog.fingerprint(spec)
    folder = _local_copy(spec.name, fingerprint)
    local = _read_local(spec, folder)
    client = _client()
    registered = _find_version(client, spec.name, fingerprint)
    if local is not None and registered is not None and str(registered.version) == local.version:
        return local, "cached"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        golden_dir = Path(tmp)
        if registered is not None:
            say(f"{spec.name}: version {registered.version} is registered; downloading a local copy")
            import mlflow

            mlflow.artifacts.download_artifacts(
                run_id=registered.run_id, artifact_path=f"{GOLDEN_ARTIFACT}/golden.npz", dst_path=tmp
            )
            shutil.move(str(golden_dir / GOLDEN_ARTIFACT / "golden.npz"), golden_dir / "golden.npz")
            action = "downloaded"
        else:
            say(f"{spec.name}: training ({spec.description})")
            trained = catalog.train(spec)
            np.savez(golden_dir / "golden.npz", inputs=trained.golden_inputs, outputs=trained.golden_outputs)
            say(f"{spec.name}: accuracy {trained.accuracy:.3f}; logging to MLflow")
            registered = _log_and_register(client, trained, fingerprint, golden_dir)
            action = "trained"
        _write_local(folder, str(registered.version), fingerprint, f"models:/{spec.name}/{registered.version}",
                     golden_dir, registered_here=action == "trained")
    result = _read_local(spec, folder)
    assert result is not None
    return result, action


def find_local(spec: ModelSpec) -> LocalModel | None:
    """The local copy for the current fingerprint, without touching MLflow (fast path for runs)."""
    return _read_local(spec, _local_copy(spec.name, catalog.fingerprint(spec)))


def resolve(spec: ModelSpec, say: Progress = lambda _msg: None) -> LocalModel:
    """The model to serve: a team's model as bench.models.team prepared it; a reference model's local copy if
    present, else built now (the first command works)."""
    if spec.prepared is not None and is_bodies_folder(Path(spec.prepared)):
        folder = Path(spec.prepared)
        facts = read_facts(folder)
        nothing = np.zeros((0, 0))
        return LocalModel(spec, facts.version, facts.content_hash, folder, nothing, nothing, None, facts,
                          bodies_file=folder / BODIES_FILE)
    if spec.prepared is not None:
        prepared = read_prepared(Path(spec.prepared))
        facts = prepared.facts
        return LocalModel(spec, facts.version, facts.content_hash, prepared.model_dir, prepared.golden_inputs,
                          prepared.golden_outputs, prepared.rows_file, facts)
    return find_local(spec) or ensure_model(spec, say)[0]


def list_registered() -> list[dict[str, str]]:
    client = _client()
    rows = []
    for spec in catalog.SPECS.values():
        local = find_local(spec)
        try:
            versions = client.search_model_versions(f"name='{spec.name}'")
        except Exception:
            versions = []
        latest = max(versions, key=lambda v: int(v.version)) if versions else None
        rows.append({
            "model": spec.name,
            "framework": spec.framework,
            "registered_versions": str(len(versions)),
            "latest_version": str(latest.version) if latest else "-",
            "current_version": local.version if local else "-",
            "local_copy": str(local.model_dir) if local else "(not built)",
        })
    if not rows:
        raise BenchError("no reference models defined")
    return rows
