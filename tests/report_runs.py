"""Run folders for the report tests: real smoke runs from tests/data/runs, and synthetic variations of them.

The real runs (a 4-runtime quick smoke run and a 2-runtime smoke run of iris-logreg, both schema 1 as of
2026-11-25; a sweep of the test-double runtime in the last schema-1 shape, sweep-v1-latest) keep their raw
samples as gzipped CSV (the repository ignores *.parquet); `materialise` rebuilds the Parquet files a
run folder holds. The variations edit results.json the way real runs go wrong or grow: invalid and
failed cells, a rate sweep, a batch-size scenario, and an old minimal schema-1 file.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

RUNS = Path(__file__).resolve().parent / "data" / "runs"
SAMPLE_DTYPES = {"status": "int32", "bytes": "int64", "worker": "int16", "in_window": "bool"}


def materialise(name: str, dest: Path) -> Path:
    """A run folder as `bench run` leaves it: results.json plus samples/*.parquet."""
    source = RUNS / name
    (dest / "samples").mkdir(parents=True)
    shutil.copy(source / "results.json", dest / "results.json")
    for csv in sorted((source / "samples").glob("*.csv.gz")):
        frame = pd.read_csv(csv).astype(SAMPLE_DTYPES)
        frame.to_parquet(dest / "samples" / (csv.name.removesuffix(".csv.gz") + ".parquet"), index=False)
    return dest


def read(folder: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((folder / "results.json").read_text())
    return payload


def write(folder: Path, payload: dict[str, Any]) -> None:
    (folder / "results.json").write_text(json.dumps(payload, indent=1))


def _cell(payload: dict[str, Any], runtime: str) -> dict[str, Any]:
    cell: dict[str, Any] = next(c for c in payload["cells"] if c["runtime"] == runtime)
    return cell


def with_bad_cells(dest: Path) -> Path:
    """The 4-runtime run with bentoml invalid (measured, too few requests), mlflow failed to start (no
    samples) and mlserver failing parity (not load-tested); the run was interrupted."""
    folder = materialise("smoke-4runtimes", dest)
    payload = read(folder)
    invalid = _cell(payload, "bentoml")
    invalid.update(valid=False, invalid_reasons=["80 requests, fewer than the minimum 100",
                                                 "achieved 31.0 req/s, below 95% of the offered 50.0"])
    failed = _cell(payload, "mlflow")
    failed.update(valid=False, requests=0, errors=0, throughput_rps=0.0, samples_file=None,
                  error="mlflow did not become ready within 120 s | last log line: <ImportError: no module 'x'>",
                  invalid_reasons=["mlflow did not become ready within 120 s"],
                  latency_ms={k: None for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")},
                  server={"cpu_percent_mean": None, "rss_mb_max": None, "startup_s": None})
    for key in ("timeseries", "latency_ci_ms", "goodput_rps", "achieved_rps", "error_rate", "slo_met"):
        failed.pop(key, None)
    parity = _cell(payload, "mlserver")
    parity.update(valid=False, requests=0, errors=0, throughput_rps=0.0, samples_file=None, error=None,
                  parity={"ok": False, "max_abs_diff": 0.25},
                  invalid_reasons=["parity check failed: not load-tested"],
                  latency_ms={k: None for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")})
    for key in ("timeseries", "latency_ci_ms", "goodput_rps", "achieved_rps", "error_rate", "slo_met"):
        parity.pop(key, None)
    payload["status"] = "interrupted"
    write(folder, payload)
    return folder


def with_sweep(dest: Path) -> Path:
    """Two runtimes swept over four rates: latency grows with load, fastapi holds the SLO longer."""
    folder = materialise("smoke-4runtimes", dest)
    payload = read(folder)
    cells = []
    index = 0
    for runtime, knee in (("fastapi", 400.0), ("bentoml", 200.0)):
        base = _cell(payload, runtime)
        for rate in (50.0, 100.0, 200.0, 400.0):
            index += 1
            cell = copy.deepcopy(base)
            factor = 1.0 + (rate / knee) ** 4
            cell.update(cell_id=f"{index:03d}-{runtime}-iris-logreg-rate-{rate:g}", label=f"rate={rate:g}",
                        offered_rps=rate, throughput_rps=rate * 0.999, achieved_rps=rate, goodput_rps=rate * 0.99,
                        latency_ms={k: (v * factor if v is not None else None) for k, v in base["latency_ms"].items()},
                        slo={"percentile": "p99", "ms": 50.0})
            cell["latency_ci_ms"] = {k: [v[0] * factor, v[1] * factor] for k, v in base["latency_ci_ms"].items()}
            cell["slo_met"] = cell["latency_ms"]["p99"] <= 50.0
            if runtime == "bentoml" and rate == 400.0:
                cell.update(valid=False, invalid_reasons=["error rate 7.10% over the limit 5.00%"])
            cells.append(cell)
    payload["cells"] = cells
    payload["scenario"].update(name="sweep", rate=None, sweep=[50, 100, 200, 400], slo={"percentile": "p99", "ms": 50})
    for cell in cells:
        cell["scenario"] = "sweep"
    write(folder, payload)
    return folder


def with_batches(dest: Path) -> Path:
    """Every runtime at batch sizes 1, 8 and 64: request latency grows, latency per row falls."""
    folder = materialise("smoke-4runtimes", dest)
    payload = read(folder)
    cells = []
    for base in payload["cells"]:
        for batch in (1, 8, 64):
            cell = copy.deepcopy(base)
            factor = 1.0 + batch / 16
            label = f"rate=50,batch={batch}"
            cell.update(cell_id=f"{len(cells) + 1:03d}-{base['runtime']}-iris-logreg-{label}",
                        label=label, batch_size=batch, scenario="batch",
                        latency_ms={k: (v * factor if v is not None else None) for k, v in base["latency_ms"].items()})
            cells.append(cell)
    payload["cells"] = cells
    payload["scenario"].update(name="batch", batch_sizes=[1, 8, 64])
    write(folder, payload)
    return folder


def schema1_minimal(dest: Path) -> Path:
    """An early schema-1 results.json with only the keys DESIGN.md lists as the minimum: no labels, no cell
    ids, no samples, no series, no scenario or runtime sections (tests/data/runs/schema1-minimal)."""
    dest.mkdir(parents=True)
    shutil.copy(RUNS / "schema1-minimal" / "results.json", dest / "results.json")
    return dest


def with_capacity(dest: Path) -> Path:
    """The sweep run as a current-schema run of `bench capacity`: a capacity record per runtime, one of
    them stopped by the generator."""
    from bench.results.schema import CapacityRecord, Slo
    from bench.results.store import load_results, write_results

    folder = with_sweep(dest)
    results = load_results(folder)
    slo = Slo(percentile="p99", ms=50.0)
    records = (
        CapacityRecord(runtime="fastapi", model="iris-logreg", config={"workers": 1}, slo=slo, capacity_rps=312.0,
                       ci_low=290.0, ci_high=340.0, resolution=0.05,
                       probes=tuple(c.label for c in results.cells if c.runtime == "fastapi")),
        CapacityRecord(runtime="bentoml", model="iris-logreg", config={"workers": 1}, slo=slo, capacity_rps=181.0,
                       ci_low=170.0, ci_high=None, limited_by="generator", resolution=0.05,
                       probes=tuple(c.label for c in results.cells if c.runtime == "bentoml")),
    )
    write_results(folder / "results.json", results.model_copy(update={"capacity": records}))
    return folder


def with_tuning(dest: Path) -> Path:
    """The capacity run as a run of `bench tune`: fastapi gains by a second worker; bentoml's default led
    it (clearly) but tuning does not rescue it; mlserver's best is over the memory budget, so not chosen."""
    from bench.results.schema import SkippedConfig, Slo, TunedConfig, TuningRecord
    from bench.results.store import load_results, write_results

    folder = with_capacity(dest)
    results = load_results(folder)
    slo = Slo(percentile="p99", ms=50.0)

    def tuned(capacity: float, low: float, high: float | None, p99: float, **config: int) -> TunedConfig:
        return TunedConfig(config=dict(config), capacity_rps=capacity, ci_low=low, ci_high=high, p99_at_common_ms=p99,
                           cpu_s_per_1000=0.8, rss_mb_max=120.0)

    fastapi_default, fastapi_best = tuned(150, 140, 160, 4.0, workers=1), tuned(312, 290, 340, 3.0, workers=2)
    bentoml_default = tuned(181, 170, 190, 6.0, threads=4)
    records = (
        TuningRecord(runtime="fastapi", model="iris-logreg", slo=slo, search="grid", server_cpus=1, memory_mb=4096,
                     common_rps=75, default=fastapi_default, best=fastapi_best, tried=(fastapi_default, fastapi_best)),
        TuningRecord(runtime="bentoml", model="iris-logreg", slo=slo, search="coordinate descent", server_cpus=1,
                     memory_mb=4096, common_rps=90, default=bentoml_default, best=bentoml_default,
                     tried=(bentoml_default, tuned(100, 90, 110, 9.0, threads=1)),
                     skipped=(SkippedConfig(config={"threads": 16}, reason="threads=16 is more than 8 per CPU"),)),
    )
    write_results(folder / "results.json", results.model_copy(update={"tuning": records, "price_per_core_hour": 0.04}))
    return folder
