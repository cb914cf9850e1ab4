"""A team's request rows: read from its file (Parquet, CSV, JSONL or .npy), checked against the model's
signature, and typed exactly as the signature says, so every wire protocol sends the same values.

A missing column, a value of the wrong type or a null where the model needs a value is a one-line error
naming the column (exit 2), found before anything is provisioned. Columns the model does not take are
dropped (a feature table often holds ids and labels too) and said so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import BenchError
from bench.protocols import Array, Rows

if TYPE_CHECKING:
    import pandas as pd

ROW_FORMATS = (".parquet", ".csv", ".jsonl", ".npy")
MAX_LOAD_ROWS = 100_000  # rows kept for the load (drawn with the seed): bodies are drawn from these
# MLflow's column types -> the dtype the column is sent and served as
COLUMN_DTYPES = {"string": "object", "boolean": "bool", "long": "int64", "integer": "int32", "double": "float64",
                 "float": "float32"}


@dataclass(frozen=True)
class ColumnType:
    name: str
    kind: str  # MLflow's DataType name: string, boolean, long, integer, double, float, binary, datetime
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    """What the model takes, from its signature: named typed columns (a DataFrame), or one tensor."""

    columns: tuple[ColumnType, ...] = ()
    tensor_dtype: str | None = None
    tensor_shape: tuple[int, ...] = ()

    @property
    def is_frame(self) -> bool:
        return self.tensor_dtype is None

    def describe(self) -> str:
        if not self.is_frame:
            return f"tensor {self.tensor_dtype} {list(self.tensor_shape)}"
        return ", ".join(f"{c.name}: {c.kind}{'' if c.required else ' (optional)'}" for c in self.columns)


def read_table(path: Path) -> pd.DataFrame | Array:
    """The file's rows as they are: a DataFrame, or an array from .npy; errors name the file."""
    import pandas as pd

    if not path.is_file():
        raise BenchError(f"--data {path}: no such file", hint=f"rows as {', '.join(ROW_FORMATS)}")
    suffix = path.suffix.lower()
    if suffix not in ROW_FORMATS:
        raise BenchError(f"--data {path}: unknown format '{suffix or '(none)'}'",
                         hint=f"rows as {', '.join(ROW_FORMATS)} (bodies as .jsonl, with --target url)")
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_json(path, lines=True, convert_dates=False)
    except Exception as exc:  # each reader raises its own kinds; the message names what is wrong
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchError(f"--data {path}: unreadable as {suffix[1:]}: {first}",
                         hint="check the file (or its extension)") from None


def conform(table: pd.DataFrame | Array, schema: InputSchema, where: str,
            say: Callable[[str], None] = lambda _msg: None) -> Rows:
    """The rows typed as the signature says, in its column order; BenchError naming the first problem."""
    if not schema.is_frame:
        return _tensor_rows(table, schema, where)
    import pandas as pd

    if isinstance(table, np.ndarray):
        raise BenchError(f"{where}: a bare array, but the model takes named columns ({schema.describe()})",
                         hint="give the rows as Parquet, CSV or JSONL with those column names")
    if len(table) == 0:
        raise BenchError(f"{where}: no rows", hint="the file needs at least one row")
    names = [str(c) for c in table.columns]
    missing = [c.name for c in schema.columns if c.required and c.name not in names]
    if missing:
        raise BenchError(f"{where}: column '{missing[0]}' is missing (the model's signature needs it)",
                         hint=f"columns in the file: {', '.join(names) or '(none)'}")
    extra = [name for name in names if name not in {c.name for c in schema.columns}]
    if extra:
        say(f"{where}: columns the model does not take are left out: {', '.join(extra)}")
    typed = {c.name: _column(table[c.name], c, where) for c in schema.columns if c.name in names}
    return pd.DataFrame(typed)


def _tensor_rows(table: pd.DataFrame | Array, schema: InputSchema, where: str) -> Array:
    values = table if isinstance(table, np.ndarray) else table.to_numpy()
    if values.ndim != 2 or len(values) == 0:
        raise BenchError(f"{where}: expected rows of a table, got shape {list(values.shape)}",
                         hint="one row per request row, one column per feature")
    width = schema.tensor_shape[1] if len(schema.tensor_shape) > 1 else -1
    if width > 0 and values.shape[1] != width:
        raise BenchError(f"{where}: {values.shape[1]} columns, the model takes {width} features",
                         hint=f"the signature's input is {schema.describe()}")
    if values.dtype.kind not in "iuf" and values.dtype.kind != "b":
        raise BenchError(f"{where}: the model takes numbers ({schema.describe()}), the file holds {values.dtype}",
                         hint="every column numeric")
    dtype = np.dtype(schema.tensor_dtype or "float64")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise BenchError(f"{where}: rows hold null, NaN or infinity", hint="drop or fill those rows")
    return values.astype(dtype)


def _column(series: pd.Series[Any], column: ColumnType, where: str) -> pd.Series[Any]:
    """One column converted to its signature type, or BenchError naming it and its first bad value."""
    name, kind = column.name, column.kind
    if kind not in COLUMN_DTYPES:
        raise BenchError(f"{where}: column '{name}' is of type {kind}: not supported yet",
                         hint="string, boolean, long, integer, double and float columns are")
    values = series.tolist()
    nulls = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and np.isnan(v))]
    if nulls and column.required:
        raise BenchError(f"{where}: column '{name}' has {len(nulls)} null value(s) (first at row {nulls[0]}); "
                         f"the model's signature requires it", hint="drop or fill those rows")
    accepted = {"string": (str,), "boolean": (bool, np.bool_), "long": (int, np.integer),
                "integer": (int, np.integer), "double": (int, float, np.integer, np.floating),
                "float": (int, float, np.integer, np.floating)}[kind]
    for index, value in enumerate(values):
        if index in nulls:
            continue
        integral_float = kind in ("long", "integer") and isinstance(value, float) and float(value).is_integer()
        wrong_bool = kind != "boolean" and isinstance(value, bool | np.bool_)
        if (not isinstance(value, accepted) and not integral_float) or wrong_bool:
            raise BenchError(f"{where}: column '{name}' must hold {kind} values; row {index} holds "
                             f"{type(value).__name__} {str(value)[:40]!r}", hint="fix the file's column type")
    if nulls:
        return series
    converted: pd.Series[Any] = series.astype(np.dtype(COLUMN_DTYPES[kind]))
    return converted


def sample(rows: Rows, count: int, seed: int) -> Rows:
    """count rows drawn without replacement with the seed, in their file order (all of them if fewer)."""
    if len(rows) <= count:
        return rows
    picked = np.sort(np.random.default_rng(seed).choice(len(rows), size=count, replace=False))
    return rows[picked] if isinstance(rows, np.ndarray) else rows.iloc[picked].reset_index(drop=True)


def save_rows(rows: Rows, folder: Path, stem: str) -> Path:
    """Rows on disk in a format that keeps their types: .npy (no pickles) for arrays, Parquet for frames."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(rows, np.ndarray):
        path = folder / f"{stem}.npy"
        np.save(path, rows, allow_pickle=False)
    else:
        path = folder / f"{stem}.parquet"
        rows.to_parquet(path, index=False)
    return path


def load_rows(path: Path) -> Rows:
    if path.suffix == ".npy":
        return np.asarray(np.load(path, allow_pickle=False))
    import pandas as pd

    return pd.read_parquet(path)
