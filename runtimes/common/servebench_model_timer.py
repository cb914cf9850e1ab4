"""The model's own cost, without a server: run with a runtime's interpreter (its virtualenv), it loads the
model as the runtimes do (servebench_serving.ServedModel: the MLflow model and its input check) and times
ServedModel.predict on the rows the load generator sends, in batches of the cell's size (its first whole
batches up to MAX_ROWS rows, what one request may carry). Prints one JSON line: {"p50_ms", "mean_ms", "calls"}.

The rows file is what the generator sends: a .npy array (a tensor model), or a table for a model whose
signature is a DataFrame: .parquet (needs pyarrow or fastparquet in the runtime's environment), or .jsonl
(one JSON object per row) / .json (a list of rows, or pandas' split orient), which need nothing. The rows are
checked and typed as a request's are (the signature's columns, order and dtypes), so predict is timed on the
frame a server would hand the model.

usage: python servebench_model_timer.py MODEL_DIR ROWS.npy|ROWS.parquet|ROWS.jsonl BATCH_SIZE SECONDS
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
from servebench_serving import MAX_ROWS, ServedModel

WARMUP_CALLS = 20
MAX_CALLS = 5000


def read_rows(model: ServedModel, rows_file: str, limit: int) -> Any:
    """The file's first `limit` rows as the model takes them: a checked 2-D array, or a frame of the
    signature's columns (the check refuses more than a request's MAX_ROWS)."""
    if rows_file.endswith(".npy"):
        return model.rows(np.load(rows_file)[:limit].tolist())
    if rows_file.endswith((".jsonl", ".json")):  # decoded as a request's body is: JSON's own types, no inference
        with open(rows_file) as handle:
            rows = [json.loads(line) for line in handle if line.strip()] if rows_file.endswith(".jsonl") \
                else json.load(handle)
        if isinstance(rows, dict) and isinstance(rows.get("data"), list):  # pandas' split orient
            return model.rows({**rows, "data": rows["data"][:limit]})
        return model.rows(rows[:limit] if isinstance(rows, list) else rows)
    if not rows_file.endswith(".parquet"):
        sys.exit(f"model timer: rows file {rows_file}: expected .npy, .parquet, .jsonl or .json")
    import pandas as pd

    try:
        table = pd.read_parquet(rows_file).head(limit)
    except ImportError as exc:
        sys.exit(f"model timer: cannot read {rows_file} in this environment ({exc}): write the rows as .jsonl")
    return model.rows(table if model.is_frame else table.to_numpy().tolist())


def batches_of(rows: Any, batch_size: int) -> list[Any]:
    """Whole batches only, as the generator sends them (a frame is sliced by position)."""
    slicer = rows.iloc if hasattr(rows, "iloc") else rows
    return [slicer[start:start + batch_size] for start in range(0, len(rows) - batch_size + 1, batch_size)]


def main() -> None:
    model_dir, rows_file, batch_size, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if not 0 < batch_size <= MAX_ROWS:
        sys.exit(f"model timer: a batch of {batch_size} rows: a server takes 1 to {MAX_ROWS} rows per request")
    model = ServedModel(model_dir)
    batches = batches_of(read_rows(model, rows_file, MAX_ROWS // batch_size * batch_size), batch_size)
    if not batches:
        sys.exit(f"model timer: {rows_file} holds fewer rows than one batch of {batch_size}")
    for call in range(WARMUP_CALLS):
        model.predict(batches[call % len(batches)])
    timings = []
    deadline = time.perf_counter() + seconds
    while len(timings) < MAX_CALLS and time.perf_counter() < deadline:
        batch = batches[len(timings) % len(batches)]
        started = time.perf_counter_ns()
        model.predict(batch)
        timings.append((time.perf_counter_ns() - started) / 1e6)
    print(json.dumps({"p50_ms": float(np.median(timings)), "mean_ms": float(np.mean(timings)),
                      "calls": len(timings)}))


if __name__ == "__main__":
    main()
