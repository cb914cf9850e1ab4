"""A team's own MLflow model as `--model` names it: `models:/NAME/VERSION`, `models:/NAME@ALIAS`,
`models:/NAME/latest`, `runs:/RUN_ID/PATH` or a local MLflow model folder.

Resolved in its tracking store (MLFLOW_TRACKING_URI or --tracking-uri, else servebench's own), copied
locally under its content hash, and prepared once per request data: the golden rows (from --data, sampled
with the seed, or from the model's input example), the reference answers computed from the same artifact
with MLflow's pyfunc (so the model's own `pyfunc_predict_fn` is honoured), and the rows the load sends.
Every problem is a BenchError with a hint (exit 2), found before anything is provisioned.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import ModelSpec
from bench.errors import BenchError
from bench.models.request_rows import (
    MAX_LOAD_ROWS,
    ColumnType,
    InputSchema,
    conform,
    load_rows,
    read_table,
    sample,
    save_rows,
)
from bench.models.team_source import (
    HASH_FILE,
    Say,
    default_tracking_uri,
    local_copy,
    quick_failing_mlflow,
    resolve_uri,
)
from bench.protocols import Array, Rows, as_predictions
from bench.redact import redact_uri

GOLDEN_ROWS = 64
PREPARED_FORMAT = 2  # of a prepared folder: a new format prepares anew rather than misreading an old one
# how closely a runtime's answers must agree with the reference, by the reference's dtype
ATOL_BY_DTYPE = {"float64": 1e-9, "float32": 1e-5, "float16": 1e-2}


@dataclass(frozen=True)
class ModelFacts:
    """Where the model came from and what its MLmodel says: recorded in results and shown in the report."""

    uri: str  # as given (credentials redacted)
    resolved: str  # the version it resolved to: models:/NAME/3, runs:/ID/PATH or the folder
    version: str
    run_id: str | None
    content_hash: str
    flavours: tuple[str, ...]
    framework: str
    inputs: str  # the signature's inputs, described
    outputs: str
    predict_fn: str | None
    requirements: tuple[str, ...]
    output_dtype: str  # of the reference answers: labels (object) compare exactly, numbers within their dtype
    data: str  # where the golden and load rows came from
    rows: int  # rows the load draws its requests from


@dataclass(frozen=True)
class PreparedModel:
    """A team's model, on disk and ready: what registry.resolve hands the runtimes and the parity check."""

    facts: ModelFacts
    model_dir: Path
    golden_inputs: Rows
    golden_outputs: Array
    rows_file: Path


def open_model(uri: str, data: Path | None = None, tracking_uri: str | None = None, seed: int = 0,
               say: Say = lambda _msg: None) -> ModelSpec:
    """Resolve, copy and prepare a team's model; its ModelSpec points at the prepared folder."""
    store = tracking_uri or default_tracking_uri()
    with quick_failing_mlflow(store):
        resolved, version, run_id, name = resolve_uri(uri, store)
        folder = local_copy(resolved, name, store, say)
    prepared = _prepare(folder, uri, resolved, version, run_id, data, seed, say)
    facts = prepared.facts
    tolerance = ATOL_BY_DTYPE.get(facts.output_dtype, ATOL_BY_DTYPE["float64"])
    return ModelSpec(name=name, framework=facts.framework,
                     description=f"{facts.resolved} ({', '.join(facts.flavours)})", parity_atol=tolerance,
                     input_kind="tensor" if isinstance(prepared.golden_inputs, np.ndarray) else "dataframe",
                     flavours=facts.flavours, source=redact_uri(uri),
                     prepared=str(prepared.rows_file.parent))


def read_facts(folder: Path) -> ModelFacts:
    meta = json.loads((folder / "facts.json").read_text())
    return ModelFacts(**{**meta, "flavours": tuple(meta["flavours"]), "requirements": tuple(meta["requirements"])})


def read_prepared(folder: Path) -> PreparedModel:
    """The prepared folder open_model wrote (golden rows and answers, load rows, facts)."""
    facts = read_facts(folder)
    golden_file = next(folder.glob("golden-inputs.*"))
    outputs = as_predictions(json.loads((folder / "golden-outputs.json").read_text()), "golden outputs")
    return PreparedModel(facts, folder.parent / "model", load_rows(golden_file), outputs,
                         next(folder.glob("rows.*")))


# ---- preparing: facts, golden rows and answers, load rows ------------------------------------------------


def _schema_of(signature: Any) -> InputSchema | None:
    if signature is None or signature.inputs is None:
        return None
    return _described_schema(signature.inputs)


def _described_schema(inputs: Any) -> InputSchema:
    """An MLflow Schema (a signature's inputs or outputs) as servebench describes it."""
    if inputs.is_tensor_spec():
        spec = inputs.inputs[0]
        return InputSchema(tensor_dtype=str(spec.type), tensor_shape=tuple(int(d) for d in spec.shape))
    columns = []
    for column in inputs.inputs:
        if column.name is None:
            raise BenchError("the model's signature has unnamed columns: servebench sends named columns",
                             hint="log the model with a signature over a DataFrame with named columns")
        columns.append(ColumnType(str(column.name), str(getattr(column.type, "name", column.type)),
                                  bool(getattr(column, "required", True))))
    return InputSchema(columns=tuple(columns))


def _schema_from_example(example: Any) -> InputSchema:
    from mlflow.models import infer_signature

    schema = _schema_of(infer_signature(example))
    assert schema is not None
    return schema


def _prepare(folder: Path, uri: str, resolved: str, version: str, run_id: str | None, data: Path | None,
             seed: int, say: Say) -> PreparedModel:
    from mlflow.models import Model

    model_dir = folder / "model"
    try:
        model = Model.load(str(model_dir))
    except Exception as exc:
        raise BenchError(f"{resolved}: its MLmodel file is unreadable: {str(exc).splitlines()[0][:200]}",
                         hint="is it an MLflow model?") from None
    flavours = tuple(sorted(model.flavors))
    framework = next((f for f in flavours if f != "python_function"), "python_function")
    if "python_function" not in flavours:
        raise BenchError(f"{resolved}: flavour {framework} has no python_function flavour, which every runtime "
                         "loads", hint="log it with a flavour MLflow can load as pyfunc")
    example = _input_example(model, model_dir)
    schema = _schema_of(model.signature) or (None if example is None else _schema_from_example(example))
    if schema is None and data is None:
        raise BenchError(f"{resolved}: the model has neither a signature nor an input example, and no --data was "
                         "given", hint="pass --data rows.parquet (or log the model with an input example)")
    data_key = hashlib.sha256(f"{PREPARED_FORMAT}:{seed}:".encode()
                              + (data.read_bytes() if data else b"example")).hexdigest()[:12]
    prepared_dir = folder / f"prepared-{data_key}"
    if (prepared_dir / "facts.json").is_file():
        return read_prepared(prepared_dir)
    if data is not None:
        table = read_table(data)
        if schema is None:
            schema = _schema_from_example(table)
        rows = conform(table, schema, f"--data {data.name}", say)
        source = f"{data.name} ({len(rows)} rows)"
    else:
        assert schema is not None
        rows = conform(example if not isinstance(example, list) else np.asarray(example), schema,
                       "the model's input example", say)
        source = f"the model's input example ({len(rows)} rows)"
    golden = sample(rows, GOLDEN_ROWS, seed)
    outputs, output_dtype = _reference_answers(model_dir, golden, resolved)
    staging = Path(tempfile.mkdtemp(prefix=".prepared-", dir=folder))
    try:
        save_rows(golden, staging, "golden-inputs")
        (staging / "golden-outputs.json").write_text(json.dumps(outputs.tolist()))
        save_rows(sample(rows, MAX_LOAD_ROWS, seed), staging, "rows")
        requirements = _requirements(model_dir)
        predict_fn = model.flavors.get("python_function", {}).get("predict_fn")
        outputs_schema = model.signature.outputs if model.signature is not None else None
        facts = ModelFacts(uri=redact_uri(uri), resolved=redact_uri(resolved), version=version, run_id=run_id,
                           content_hash=(folder / HASH_FILE).read_text().strip(), flavours=flavours,
                           framework=framework,
                           inputs=schema.describe(), outputs=_describe_outputs(outputs_schema, outputs),
                           predict_fn=str(predict_fn) if predict_fn else None, requirements=tuple(requirements),
                           output_dtype=output_dtype, data=source, rows=min(len(rows), MAX_LOAD_ROWS))
        (staging / "facts.json").write_text(json.dumps(asdict(facts), indent=1))
        if prepared_dir.exists():
            shutil.rmtree(prepared_dir)
        staging.rename(prepared_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return read_prepared(prepared_dir)


def _input_example(model: Any, model_dir: Path) -> Any:
    if model.saved_input_example_info is None:
        return None
    try:
        return model.load_input_example(str(model_dir))
    except Exception as exc:
        raise BenchError(f"the model's input example is unreadable: {str(exc).splitlines()[0][:200]}",
                         hint="pass --data rows.parquet instead") from None


def _reference_answers(model_dir: Path, golden: Rows, resolved: str) -> tuple[Array, str]:
    """What every runtime is held to: the artifact's own pyfunc, in the harness, on the golden rows."""
    import mlflow.pyfunc

    try:
        pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        answer = pyfunc.predict(golden)
    except Exception as exc:
        raise BenchError(f"{resolved}: the harness could not compute reference answers: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                         hint="the model needs libraries the harness lacks; see its requirements.txt") from None
    return _predictions_array(answer)


def _predictions_array(answer: Any) -> tuple[Array, str]:
    """pyfunc's answer (array, Series, DataFrame, list, dict of arrays) as the 2-D array a codec decodes to."""
    import pandas as pd

    if isinstance(answer, (pd.DataFrame, pd.Series)):
        answer = answer.to_numpy()
    elif isinstance(answer, dict):
        answer = np.column_stack([np.asarray(v).reshape(len(np.asarray(v)), -1) for v in answer.values()])
    array = np.asarray(answer)
    values = array.tolist() if array.dtype.kind in "biuf" else np.vectorize(str, otypes=[object])(array).tolist()
    return as_predictions(values, "the model's answer"), str(array.dtype)


def _describe_outputs(schema: Any, outputs: Array) -> str:
    if schema is not None:
        try:
            described = _described_schema(schema)
        except BenchError:  # unnamed output columns: MLflow's own words
            return str(schema)[:300]
        if described is not None:
            return described.describe()
    kind = "labels" if outputs.dtype == object else "numbers"
    return f"{kind} {list(outputs.shape[1:])} per row (no output signature)"


def _requirements(model_dir: Path) -> list[str]:
    path = model_dir / "requirements.txt"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]

