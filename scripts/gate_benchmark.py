"""Prove the CI gate on this machine: false alarms on A/A pairs, detections on A/B pairs.

An A/A pair is two `bench run`s of the same runtime and model with nothing changed: `bench compare`
must pass (exit 0); exit 1 is a false alarm. An A/B pair is a run A, then a run B whose FastAPI server
adds a fixed delay of 20% of A's p50 to every prediction: `bench compare A B` must exit 1. The delay is
the FastAPI runtime's test-only setting SERVEBENCH_TEST_DELAY_MS, exported to B's `bench run` (the local
target passes the harness's environment through to the server; the server announces the delay in its
log). Pairs alternate A/A, A/B, so both kinds see the same machine conditions. Every pair is judged by
the `bench compare` command with its default thresholds, exactly as CI runs it.

The profile defaults to smoke, the profile the CI workflow gates with: the benchmark must prove the gate
as it is used. A smoke run measures 5 s at 50 req/s (250 requests, 5 one-second blocks), enough for the
median's interval; p99 with 250 requests is noisy by nature, which the gate must survive, not avoid.

    .venv/bin/python scripts/gate_benchmark.py [--pairs 10] [--profile smoke] [--out DIR]

Takes about 40 s per pair; run it in the background on a long benchmark. Prints one line per pair and
the counts; exits 0 when both targets are met (0 false alarms, detections >= 90% of pairs), else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(sys.executable).with_name("bench")
DELAY_ENV = "SERVEBENCH_TEST_DELAY_MS"
RUN_TIMEOUT_S = 600


def cpu_pressure_us() -> int | None:
    """Linux PSI: microseconds during which some runnable task waited for a CPU (machine-wide)."""
    try:
        text = Path("/proc/pressure/cpu").read_text()
    except OSError:
        return None
    some = next((line for line in text.splitlines() if line.startswith("some")), "")
    return int(some.rsplit("total=", 1)[1]) if "total=" in some else None


def bench_run(out: Path, args: argparse.Namespace, delay_ms: float | None) -> dict[str, Any]:
    """One `bench run` into `out`; returns the cell of args.runtime from its results.json, with the
    machine's CPU pressure over the run (how busy the rest of the machine was: context, not a verdict)."""
    env = {key: value for key, value in os.environ.items() if key != DELAY_ENV}
    if delay_ms is not None:
        env[DELAY_ENV] = f"{delay_ms:.4f}"
    command = [str(BENCH), "run", "--runtime", args.runtime, "--model", args.model, "--scenario", args.scenario,
               "--profile", args.profile, "--no-mlflow", "--out", str(out)]
    pressure, started = cpu_pressure_us(), time.monotonic()
    with (out.parent / f"{out.name}.log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=RUN_TIMEOUT_S,
                              check=False)
    after, elapsed = cpu_pressure_us(), time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"bench run exited {done.returncode}; see {out.parent / (out.name + '.log')}")
    cells = json.loads((out / "results.json").read_text())["cells"]
    cell: dict[str, Any] = next(c for c in cells if c["runtime"] == args.runtime)
    busy = None if pressure is None or after is None else (after - pressure) / (elapsed * 1e6)
    return {**cell, "machine_cpu_pressure": busy}


def bench_compare(baseline: Path, current: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([str(BENCH), "compare", str(baseline), str(current), "--format", "json"],
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode not in (0, 1, 2) or not done.stdout.strip():
        raise RuntimeError(f"bench compare exited {done.returncode}: {done.stderr.strip()[-300:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def _metric_text(report: dict[str, Any], runtime: str) -> str:
    cell = next((c for c in report["cells"] if c["runtime"] == runtime), None)
    if cell is None or not cell["metrics"]:
        return f"{cell['verdict'] if cell else 'missing'}: {'; '.join(cell['notes']) if cell else ''}"
    parts = []
    for metric in cell["metrics"]:
        if metric["metric"] == "throughput" or metric["ci"] is None:
            continue
        low, high = metric["ci"]
        parts.append(f"{metric['metric']} {metric['baseline']:.2f}->{metric['current']:.2f} ms "
                     f"{metric['change'] * 100:+.1f}% [{low * 100:+.1f}, {high * 100:+.1f}] {metric['verdict']}")
    return "; ".join(parts)


def run_pair(kind: str, index: int, args: argparse.Namespace) -> dict[str, Any]:
    folder = args.out / f"{kind.lower().replace('/', '')}-{index:02d}"
    folder.mkdir(parents=True)
    started = time.monotonic()
    cell_a = bench_run(folder / "a", args, None)
    delay = None
    if kind == "A/B":
        delay = args.delay_fraction * float(cell_a["latency_ms"]["p50"])
    cell_b = bench_run(folder / "b", args, delay)
    code, report = bench_compare(folder / "a", folder / "b")
    pressure = [cell["machine_cpu_pressure"] for cell in (cell_a, cell_b)]
    pair = {"kind": kind, "index": index, "exit_code": code, "status": report["status"], "delay_ms": delay,
            "headline": report["headline"], "machine_cpu_pressure": pressure,
            "seconds": round(time.monotonic() - started, 1), "folder": str(folder)}
    delay_text = f" delay {delay:.3f} ms" if delay is not None else ""
    busy = "/".join("?" if p is None else f"{p:.0%}" for p in pressure)
    print(f"{kind} {index:2d}/{args.pairs}{delay_text}: exit {code} ({report['status']}); "
          f"{_metric_text(report, args.runtime)}; CPU pressure A/B {busy}", flush=True)
    return pair


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10, help="A/A pairs and A/B pairs each (default 10)")
    parser.add_argument("--runtime", default="fastapi", help="must honour SERVEBENCH_TEST_DELAY_MS (fastapi)")
    parser.add_argument("--model", default="iris-logreg")
    parser.add_argument("--scenario", default="smoke")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--delay-fraction", type=float, default=0.2, help="B's delay as a fraction of A's p50")
    parser.add_argument("--out", type=Path, default=Path("reports") / f"gate-benchmark-{datetime.now():%Y%m%d-%H%M%S}")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    print(f"gate benchmark: {args.pairs} A/A and {args.pairs} A/B pairs of {args.runtime} x {args.model}, "
          f"scenario {args.scenario}, profile {args.profile}, B delay {args.delay_fraction:.0%} of A's p50; "
          f"runs in {args.out}", flush=True)
    pairs = []
    for index in range(1, args.pairs + 1):
        for kind in ("A/A", "A/B"):
            try:
                pairs.append(run_pair(kind, index, args))
            except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError, StopIteration) as exc:
                print(f"{kind} {index:2d}/{args.pairs}: ERROR {exc}", flush=True)
                pairs.append({"kind": kind, "index": index, "exit_code": None, "status": "error", "error": str(exc)})
    summary = {}
    for kind, wanted in (("A/A", 1), ("A/B", 1)):
        mine = [p for p in pairs if p["kind"] == kind]
        summary[kind] = {"pairs": len(mine), "exit_1": sum(p["exit_code"] == wanted for p in mine),
                         "exit_0": sum(p["exit_code"] == 0 for p in mine),
                         "undetermined": sum(p["exit_code"] == 2 for p in mine),
                         "errors": sum(p["exit_code"] is None for p in mine)}
    false_alarms, detections = summary["A/A"]["exit_1"], summary["A/B"]["exit_1"]
    (args.out / "summary.json").write_text(json.dumps({"summary": summary, "pairs": pairs}, indent=1) + "\n")
    print(f"false alarms (A/A, exit 1): {false_alarms}/{args.pairs} (target 0); "
          f"undetermined {summary['A/A']['undetermined']}, errors {summary['A/A']['errors']}")
    print(f"detections (A/B, exit 1): {detections}/{args.pairs} (target >= {0.9 * args.pairs:g}); "
          f"undetermined {summary['A/B']['undetermined']}, errors {summary['A/B']['errors']}")
    met = false_alarms == 0 and detections >= 0.9 * args.pairs
    print("targets met" if met else "targets MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
