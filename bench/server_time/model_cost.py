"""The model's own cost: its predict timed in-process in the runtime's environment, with no server, so a
report can say how much of a request's latency is the model and how much is serving.

runtimes/common/servebench_model_timer.py runs with the runtime's interpreter (where the target has one on
this machine: the local target's virtualenv), pinned to the server's CPUs with one BLAS/OpenMP thread per CPU
as the server has them, on the rows the generator sends.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pydantic import ValidationError

from bench.paths import shared_code_dir
from bench.processes import inherited_environment, pin_and_tie_to_parent
from bench.results.profiles import ModelCost

TIMER = "servebench_model_timer.py"
TIMING_S = 2.0  # of predict calls after 20 warm-up calls (at most 5,000 calls)
TIMEOUT_S = 120.0  # loading torch and MLflow included


def time_model(python: Path, model_dir: Path, rows_file: Path, batch_size: int, cpus: tuple[int, ...],
               log: Path) -> ModelCost | None:
    """The model's predict timed at batch_size, or None (what went wrong is in the log)."""
    threads = str(max(1, len(cpus)))
    env = {**inherited_environment(), "PYTHONPATH": str(shared_code_dir()), "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    command = [str(python), str(shared_code_dir() / TIMER), str(model_dir), str(rows_file), str(batch_size),
               str(TIMING_S)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL, preexec_fn=lambda: pin_and_tie_to_parent(cpus))
    except (OSError, subprocess.TimeoutExpired) as exc:
        _append(log, f"model timer: {exc}\n")
        return None
    _append(log, f"$ {' '.join(command)}\n{done.stderr[-4000:]}{done.stdout}")
    if done.returncode != 0 or not done.stdout.strip():
        return None
    try:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return ModelCost(predict_ms_p50=figures["p50_ms"], predict_ms_mean=figures["mean_ms"], calls=figures["calls"],
                         batch_size=batch_size)
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def _append(log: Path, text: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(text)
