"""What every Python serving runtime of servebench shares: the MLflow model with what its signature says
about inputs, the check of the rows a request carries, and the answer made JSON-ready.

Lives once (runtimes/common) so that each runtime's own file holds only what its framework needs. Each
runtime folder lists it under serving_code; locally it is found through PYTHONPATH={shared_dir}, and in
an image it is copied beside the runtime's own code. mlflow is imported only by ServedModel, and pandas
only when a DataFrame is built, so a runtime that serves a derived artifact (ONNX) can use the row check
without either.

Two kinds of model input, told apart by the MLflow signature:

- a tensor (a TensorSpec, or no signature): a list of equal-length numeric rows, checked by checked_rows
  and handed to the model as a 2-D array of the signature's dtype;
- a DataFrame (a column-based schema of named ColSpecs): rows as one JSON object per row (records),
  as {"columns": [...], "data": [[...], ...]} (pandas' split orient), or as one Open Inference Protocol V2
  input per column (v2_frame). Each column is checked against its MLflow type (string, boolean, long,
  integer, double, float; other types are refused) and the frame is built in the signature's column order
  with its dtypes (string: str values, boolean: bool, long: int64, integer: int32, double: float64, float:
  float32). Optional columns may be left out of a request altogether.

The model's own predict function is MLflow's choice (pyfunc honours the flavour's `pyfunc_predict_fn`).
Answers are made JSON-ready by `answer`: an array's nested lists, a Series' list, a DataFrame's records.

A request that breaks the contract raises BadInput with the HTTP status it deserves (4xx), never a 500:
not a list of equal-length numeric rows, NaN or infinity, the wrong number of features, a missing or
unknown column, a value of the wrong JSON type for its column, or over MAX_ROWS rows. Settings
(environment): MODEL_DIR (the MLflow model folder), MAX_ROWS (default 4096), MAX_BODY_BYTES (default 16 MiB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_DIR = os.environ.get("MODEL_DIR", "/mnt/models")
MODEL_NAME = os.environ.get("MODEL_NAME", "model")
MAX_ROWS = int(os.environ.get("MAX_ROWS", "4096"))
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", str(16 * 1024 * 1024)))


class BadInput(ValueError):
    """A request the model cannot answer, and the status that says why (400 malformed, 413 too large,
    422 well-formed but wrong)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def checked_rows(value: Any, n_features: int | None, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The rows as a 2-D array of the model's dtype, or BadInput."""
    if isinstance(value, np.ndarray):
        rows = value
    else:
        if not isinstance(value, list) or not value:
            raise BadInput("expected a non-empty list of rows")
        if len(value) > MAX_ROWS:
            raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
        if not all(isinstance(row, list) and row for row in value):
            raise BadInput("every row must be a non-empty list of numbers")
        if len({len(row) for row in value}) != 1:
            raise BadInput("all rows must have the same number of features")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for row in value for x in row):
            raise BadInput("rows must hold numbers only")
        try:
            rows = np.asarray(value, dtype=np.float64)
        except (OverflowError, ValueError):
            raise BadInput("rows hold a number out of range") from None
    if rows.ndim != 2 or rows.shape[0] == 0 or (n_features is not None and rows.shape[1] != n_features):
        raise BadInput(f"expected rows of {n_features or 'some'} features, got shape {list(rows.shape)}")
    if len(rows) > MAX_ROWS:
        raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
    if rows.dtype.kind not in "iuf":
        raise BadInput(f"rows must be numeric, got {rows.dtype}")
    if rows.dtype.kind == "f" and not np.isfinite(rows).all():
        raise BadInput("rows hold NaN or infinity")
    return rows.astype(dtype, copy=False)


# ---- DataFrame input: one column of the signature, and its values checked --------------------------------

# The MLflow column types served, with the numpy dtype of the frame's column and the Open Inference Protocol
# V2 datatypes a column of that type may arrive as (the first: the one it is declared as).
_INTEGER_V2 = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
_FLOAT_V2 = ("FP64", "FP32", "FP16", *_INTEGER_V2)
COLUMN_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "string": ("object", ("BYTES",)),
    "boolean": ("bool", ("BOOL",)),
    "long": ("int64", _INTEGER_V2),
    "integer": ("int32", ("INT32", *_INTEGER_V2)),
    "double": ("float64", _FLOAT_V2),
    "float": ("float32", ("FP32", *_FLOAT_V2)),
}
_SPLIT_KEYS = {"columns", "data", "index"}  # pandas' split orient; an index, when sent, is ignored


@dataclass(frozen=True)
class Column:
    """One named input of a column-based signature: its MLflow type ('string', 'long'..., or what MLflow
    calls a type this module does not serve) and whether a request may leave it out."""

    name: str
    type: str
    required: bool = True

    @property
    def v2_datatype(self) -> str:
        """The Open Inference Protocol V2 datatype the column is declared as (model metadata)."""
        return COLUMN_TYPES[self.type][1][0] if self.type in COLUMN_TYPES else self.type.upper()

    def values(self, values: list[Any]) -> np.ndarray[Any, Any]:
        """The column's values as an array of its dtype, or BadInput naming the column."""
        kind = self.type
        if kind not in COLUMN_TYPES:
            raise BadInput(f"column '{self.name}' is of type {kind}, which this server does not take")
        if kind == "string":
            if not all(type(v) is str for v in values):
                raise BadInput(f"column '{self.name}' holds strings only ({_offender(values, (str,))})")
            array = np.empty(len(values), dtype=object)
            array[:] = values
            return array
        if kind == "boolean":
            if not all(type(v) is bool for v in values):
                raise BadInput(f"column '{self.name}' holds booleans only ({_offender(values, (bool,))})")
            return np.asarray(values, dtype=bool)
        if kind in ("long", "integer"):
            if not all(type(v) is int for v in values):
                raise BadInput(f"column '{self.name}' holds integers only ({_offender(values, (int,))})")
            dtype = np.dtype(COLUMN_TYPES[kind][0])
            low, high = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
            if not low <= min(values) <= max(values) <= high:
                raise BadInput(f"column '{self.name}' holds an integer beyond {dtype}")
            return np.asarray(values, dtype=dtype)
        if not all(type(v) is float or type(v) is int for v in values):
            raise BadInput(f"column '{self.name}' holds numbers only ({_offender(values, (int, float))})")
        try:
            array = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond any float
            raise BadInput(f"column '{self.name}' holds a number out of range") from None
        if not np.isfinite(array).all():
            raise BadInput(f"column '{self.name}' holds NaN or infinity")
        if kind == "float":
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
            if not np.isfinite(array).all():
                raise BadInput(f"column '{self.name}' holds a number beyond float32")
        return array


def _offender(values: list[Any], types: tuple[type, ...]) -> str:
    """What the first value of another JSON type is, for the error message (never the whole input)."""
    for row, value in enumerate(values):
        if type(value) not in types:
            shown = "null" if value is None else type(value).__name__
            return f"row {row} holds {shown}"
    return "every value"


def _columns_of(schema: Any) -> tuple[Column, ...] | None:
    """The named columns of a column-based signature; None for a tensor signature or none at all."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    columns = []
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", None) or str(spec.type)  # a DataType, or Array/Object/Map...
        columns.append(Column(spec.name, kind, bool(getattr(spec, "required", True))))
    return tuple(columns)


def signature_columns(model_dir: str = MODEL_DIR) -> tuple[Column, ...] | None:
    """The columns of the model's column-based signature, read from its MLmodel file alone, for a framework
    that needs the request's type before it loads the model (BentoML, in its supervisor process too): no
    mlflow import (about 90 MB and seconds). None for a tensor signature, unnamed columns or none at all; the
    same answer as ServedModel.columns, which reads the signature through MLflow."""
    import json

    import yaml  # a dependency of mlflow-skinny, in every environment that loads MLflow models

    with open(os.path.join(model_dir, "MLmodel")) as handle:
        inputs = ((yaml.safe_load(handle) or {}).get("signature") or {}).get("inputs")
    specs = json.loads(inputs) if inputs else []
    if not specs or any(spec.get("type") == "tensor" or "name" not in spec for spec in specs):
        return None
    return tuple(Column(str(spec["name"]), str(spec.get("type")), bool(spec.get("required", True))) for spec in specs)


def _json_ready(value: Any) -> Any:
    """numpy scalars and arrays inside a prediction as plain Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    return value


V2_DATATYPES = {"float64": "FP64", "float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32",
                "int16": "INT16", "int8": "INT8", "uint64": "UINT64", "uint32": "UINT32", "uint16": "UINT16",
                "uint8": "UINT8", "bool": "BOOL"}


def v2_output(name: str, values: Any) -> dict[str, Any]:
    """One Open Inference Protocol V2 output tensor from an array-like answer: strings as BYTES."""
    array = np.asarray(values)
    if array.dtype.kind in "OUS":
        datatype, data = "BYTES", [str(item) for item in array.ravel().tolist()]
    else:
        datatype, data = V2_DATATYPES.get(str(array.dtype), "FP64"), array.ravel().tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


class ServedModel:
    """An MLflow pyfunc model and the input its signature declares: a tensor (dtype and feature count) or a
    DataFrame (`columns`, in the signature's order)."""

    def __init__(self, model_dir: str = MODEL_DIR) -> None:
        import mlflow.pyfunc

        self.pyfunc = mlflow.pyfunc.load_model(model_dir)
        schema = self.pyfunc.metadata.get_input_schema()
        self.columns: tuple[Column, ...] | None = _columns_of(schema)
        tensor = schema.inputs[0] if schema is not None and schema.is_tensor_spec() else None
        self.dtype: np.dtype[Any] = np.dtype(tensor.type) if tensor is not None else np.dtype("float64")
        shape = tensor.shape if tensor is not None else (-1, -1)
        self.n_features = int(shape[1]) if len(shape) > 1 and shape[1] > 0 else None

    @property
    def is_frame(self) -> bool:
        """Whether the model takes a DataFrame of named, typed columns (a column-based signature)."""
        return self.columns is not None

    # ---- decoding -------------------------------------------------------------------------------------

    def rows(self, value: Any) -> Any:
        """The rows of a request body's "instances" (or a Seldon jsonData): a checked 2-D array for a
        tensor model; for a DataFrame model, a frame from records, from pandas' split orient
        ({"columns", "data"}), or from a DataFrame already decoded (a rows file). BadInput otherwise."""
        if self.columns is None:
            return checked_rows(value, self.n_features, self.dtype)
        if isinstance(value, dict):
            return self.frame_from_split(value)
        if isinstance(value, list):
            return self.frame_from_records(value)
        if type(value).__name__ == "DataFrame":
            return self.frame_from_table(value)
        raise BadInput(f"expected a non-empty list of rows, one object each with columns {self._names()}")

    def frame_from_records(self, records: Any) -> Any:
        """A frame from one JSON object per row: {"plan": "basic", "autopay": true, ...}."""
        if not isinstance(records, list) or not records:
            raise BadInput(f"expected a non-empty list of rows, one object each with columns {self._names()}")
        if len(records) > MAX_ROWS:
            raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
        if not all(isinstance(record, dict) for record in records):
            raise BadInput(f"every row must be an object with columns {self._names()}")
        names = records[0].keys()
        for record in records:
            if record.keys() != names:
                self._check_names(list(record.keys()))  # names what is wrong with this row
                raise BadInput("every row must have the same columns")
        present = self._check_names(list(names))
        return self._frame({column.name: [record[column.name] for record in records] for column in present})

    def frame_from_split(self, split: Any) -> Any:
        """A frame from pandas' split orient without index: {"columns": [...], "data": [[...], ...]}."""
        if not isinstance(split, dict) or not {"columns", "data"} <= split.keys() or split.keys() - _SPLIT_KEYS:
            raise BadInput('expected {"columns": [names], "data": [rows]}')
        names, data = split["columns"], split["data"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise BadInput('"columns" must be a list of column names')
        if not isinstance(data, list) or not data:
            raise BadInput('"data" must be a non-empty list of rows')
        if len(data) > MAX_ROWS:
            raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
        if not all(isinstance(row, list) and len(row) == len(names) for row in data):
            raise BadInput(f"every row of \"data\" must be a list of {len(names)} values, one per column")
        present = self._check_names(names)
        where = {name: index for index, name in enumerate(names)}
        return self._frame({column.name: [row[where[column.name]] for row in data] for column in present})

    def frame_from_table(self, table: Any) -> Any:
        """A frame from a DataFrame read elsewhere (a rows file), checked and typed like a request's."""
        if len(table) == 0:
            raise BadInput("an empty table: at least one row")
        present = self._check_names([str(name) for name in table.columns])
        return self._frame({column.name: table[column.name].tolist() for column in present})

    def v2_frame(self, inputs: Any) -> Any:
        """A frame from Open Inference Protocol V2 inputs, one per column: {"name": column, "shape": [n] or
        [n, 1], "datatype": "BYTES"/"BOOL"/"INT64"/"FP64"..., "data": n values (flat, or n lists of one)}."""
        if not isinstance(inputs, list) or not inputs:
            raise BadInput("expected one input per column")
        names, columns, rows = [], {}, None
        for tensor in inputs:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise BadInput("every input needs a name (its column)")
            name, shape, data = tensor["name"], tensor.get("shape"), tensor.get("data")
            if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape) \
                    or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise BadInput(f"input '{name}': a column's shape is [rows] or [rows, 1], got {shape}")
            if rows is None:
                rows = shape[0]
            if shape[0] != rows:
                raise BadInput(f"input '{name}' has {shape[0]} rows, another input {rows}")
            if not isinstance(data, list):
                raise BadInput(f"input '{name}': data must be a list")
            if data and all(isinstance(item, list) and len(item) == 1 for item in data):
                data = [item[0] for item in data]  # nested as [[v], [v], ...]
            if len(data) != shape[0]:
                raise BadInput(f"input '{name}': shape {shape} needs {shape[0]} values, got {len(data)}")
            names.append(name)
            columns[name] = (tensor.get("datatype"), data)
        if not rows:
            raise BadInput("an empty request: at least one row")
        if rows > MAX_ROWS:
            raise BadInput(f"at most {MAX_ROWS} rows per request", status=413)
        present = self._check_names(names)
        for column in present:
            datatype = columns[column.name][0]
            allowed = sorted(set(COLUMN_TYPES.get(column.type, ("", ()))[1]))
            if allowed and datatype not in allowed:
                raise BadInput(f"input '{column.name}' (a {column.type} column) must be one of {', '.join(allowed)}, "
                               f"got {datatype!r}")
        return self._frame({column.name: columns[column.name][1] for column in present})

    def _names(self) -> list[str]:
        return [column.name for column in self.columns or ()]

    def _check_names(self, names: list[str]) -> list[Column]:
        """The signature's columns a request sends, in the signature's order; BadInput for a missing,
        unknown or repeated one."""
        assert self.columns is not None
        known = {column.name for column in self.columns}
        if len(set(names)) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise BadInput(f"column(s) sent twice: {', '.join(repeated)}")
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BadInput(f"unknown column(s): {', '.join(map(str, unknown[:10]))}; the model takes "
                           f"{', '.join(self._names())}")
        sent = set(names)
        missing = [column.name for column in self.columns if column.required and column.name not in sent]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        return [column for column in self.columns if column.name in sent]

    def _frame(self, values: dict[str, list[Any]]) -> Any:
        import pandas as pd

        assert self.columns is not None
        arrays = {column.name: column.values(values[column.name]) for column in self.columns
                  if column.name in values}
        return pd.DataFrame(arrays, columns=list(arrays))

    # ---- predicting and answering ---------------------------------------------------------------------

    def predict(self, rows: Any) -> Any:
        """The model's answer: an array for a tensor model (as it always was); for a DataFrame model what
        pyfunc returns (an array, a Series, a DataFrame...), made JSON-ready by `answer`."""
        if self.columns is None:
            return np.asarray(self.pyfunc.predict(rows))
        return self.pyfunc.predict(rows)

    def answer(self, output: Any) -> list[Any]:
        """One JSON-ready prediction per row: an array's nested lists, a Series' values, a DataFrame's rows
        as objects."""
        if isinstance(output, np.ndarray):
            result: list[Any] = output.tolist()
            return result
        kind = type(output).__name__
        if kind == "DataFrame":
            return [_json_ready(record) for record in output.to_dict(orient="records")]
        if kind == "Series":
            return [_json_ready(item) for item in output.tolist()]
        return [_json_ready(item) for item in (output if isinstance(output, list) else np.asarray(output).tolist())]

    def v2_outputs(self, output: Any) -> list[dict[str, Any]]:
        """The answer as Open Inference Protocol V2 outputs: an array (or a Series) as 'output-0' of its own
        shape, strings as BYTES; a DataFrame as one output per column, named after it, of shape [rows, 1]."""
        if type(output).__name__ == "DataFrame":
            return [v2_output(str(name), output[name].to_numpy().reshape(-1, 1)) for name in output.columns]
        if type(output).__name__ == "Series":
            output = output.to_numpy()
        return [v2_output("output-0", output)]

    def join(self, batches: list[Any]) -> Any:
        """Decoded requests as one batch (server-side batching), in order."""
        if self.columns is None:
            return np.concatenate(batches)
        import pandas as pd

        return pd.concat(batches, ignore_index=True)

    def predict_rows(self, value: Any) -> list[Any]:
        """Check, predict, and answer as JSON-ready lists, one prediction per row."""
        return self.answer(self.predict(self.rows(value)))
