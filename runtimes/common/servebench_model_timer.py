"""The model's own cost, without a server: run with a runtime's interpreter (its virtualenv), it loads the
model as the runtimes do (servebench_serving.ServedModel: the MLflow model and its input check) and times
ServedModel.predict on the rows the load generator sends, in batches of the cell's size. Prints one JSON
line: {"p50_ms", "mean_ms", "calls"}.

usage: python servebench_model_timer.py MODEL_DIR ROWS.npy BATCH_SIZE SECONDS
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from servebench_serving import ServedModel

WARMUP_CALLS = 20
MAX_CALLS = 5000


def main() -> None:
    model_dir, rows_file, batch_size, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    model = ServedModel(model_dir)
    rows = model.rows(np.load(rows_file).tolist())
    batches = [rows[start:start + batch_size] for start in range(0, len(rows) - batch_size + 1, batch_size)]
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
