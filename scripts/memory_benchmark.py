"""How much memory the harness needs as a run grows, and how long a million samples take to summarise.

    .venv/bin/python scripts/memory_benchmark.py [--runtime fastapi] [--rate 2000] [--short 60] [--long 600]
        [--summarise-only]

First times the merge of one million samples from generator CSV files into the sorted Parquet file and
`bench.stats.summarize` over that file, as `bench run` does at the end of a cell. Then runs `bench run`
against a runtime (the test double unless --runtime says otherwise) at the same open-loop rate for a short
and a long window, one
after the other, sampling every 0.2 s the peak RSS of the harness process (bench run itself) and, apart,
of the load generator's processes. Prints the figures; the memory target is that the long run's harness
peak stays within 15% of the short run's. A benchmark, not a test: these machines drift, so read ratios,
not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
FAKE_RUNTIME = ROOT / "tests" / "data" / "fake-runtime"


def _peak_rss(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Run command to the end; its own peak RSS and its load generator's (Locust processes), in MB."""
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    harness = psutil.Process(process.pid)
    harness_peak = generator_peak = 0.0
    while process.poll() is None:
        try:
            harness_peak = max(harness_peak, harness.memory_info().rss / 2**20)
            locusts = [child for child in harness.children(recursive=True)
                       if "locust" in " ".join(child.cmdline())]
            generator_peak = max(generator_peak, sum(child.memory_info().rss for child in locusts) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)
    if process.returncode not in (0, 1):
        raise SystemExit(f"bench run failed ({process.returncode}): {log.read_text()[-2000:]}")
    return harness_peak, generator_peak, process.returncode


def measure_run(runtime: str, rate: float, duration_s: float, folder: Path) -> dict[str, object]:
    scenario = folder / f"memory-{duration_s:g}.yaml"
    scenario.write_text(json.dumps({"name": "memory", "loop": "open", "arrival": "constant", "rate": rate,
                                    "warmup_s": 2, "duration_s": duration_s, "slo": {"percentile": "p99",
                                                                                     "ms": 1000}}))
    out = folder / f"run-{duration_s:g}"
    started = time.monotonic()
    harness, generator, code = _peak_rss(
        [sys.executable, "-m", "bench.cli", "run", "--runtime", runtime, "--model", "iris-logreg",
         "--scenario", str(scenario), "--length", "full", "--no-mlflow", "--out", str(out)],
        {**os.environ, "COLUMNS": "200"}, folder / f"run-{duration_s:g}.log")
    cell = json.loads((out / "results.json").read_text())["cells"][0]
    return {"duration_s": duration_s, "requests": cell["counts"]["scheduled"], "harness_peak_mb": harness,
            "generator_peak_mb": generator, "wall_s": time.monotonic() - started, "valid": cell["validity"]["valid"],
            "reasons": "; ".join(cell["validity"]["reasons"]), "exit": code}


def summarise_a_million(folder: Path) -> tuple[float, float]:
    """Seconds to merge a million samples from two generator CSV files into the sorted Parquet file, and
    to summarise that file, as `bench run` does at the end of a cell."""
    from bench.results.sample_file import merge_generator_files
    from bench.stats import Limits, Window, summarize

    rng = np.random.default_rng(0)
    n = 1_000_000
    load = folder / "million"
    load.mkdir()
    for worker in range(2):
        scheduled = 1_000.0 + np.arange(worker, n, 2) / 2_000.0
        service = rng.gamma(2.0, 1.0, len(scheduled))
        pd.DataFrame({"scheduled": scheduled, "sent": scheduled + 0.0002, "latency_ms": service + 0.2,
                      "service_ms": service, "status": 200, "bytes": 40, "worker": worker, "queued": 0}
                     ).to_csv(load / f"samples-{worker}.csv", header=False, index=False, float_format="%.6f")
    window = Window(1_000.0, 1_500.0)
    started = time.perf_counter()
    merged = merge_generator_files(load, load / "samples.parquet", (window.start, window.end))
    merged_at = time.perf_counter()
    summarize(merged, window, Limits(slo_ms=50.0), 2_000.0)
    return merged_at - started, time.perf_counter() - merged_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--runtime", default=str(FAKE_RUNTIME),
                        help="a runtime that holds the rate (default: the test double, about 400 req/s)")
    parser.add_argument("--short", type=float, default=60.0)
    parser.add_argument("--long", type=float, default=600.0)
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="servebench-memory-") as folder:
        merge_s, summarise_s = summarise_a_million(Path(folder))
        print(f"1,000,000 samples: merged into sorted Parquet in {merge_s:.2f} s, summarised in {summarise_s:.2f} s")
        if args.summarise_only:
            return
        rows = [measure_run(args.runtime, args.rate, duration, Path(folder)) for duration in (args.short, args.long)]
    for row in rows:
        print(f"{row['duration_s']:>6.0f} s at {args.rate:g} req/s: {row['requests']:>9,} requests, harness peak "
              f"{row['harness_peak_mb']:.0f} MB, generator peak {row['generator_peak_mb']:.0f} MB, "
              f"{row['wall_s']:.0f} s wall, valid={row['valid']} {row['reasons']}")
    ratio = float(rows[1]["harness_peak_mb"]) / float(rows[0]["harness_peak_mb"])
    print(f"harness peak, long / short: {ratio:.2f} (target: within 1.15)")


if __name__ == "__main__":
    main()
