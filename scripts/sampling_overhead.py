"""What `bench run --sample-server` costs the server it profiles: the same cell measured with and without
py-spy sampling the server, interleaved on one deployment, with the ratios printed.

    .venv/bin/python scripts/sampling_overhead.py [--runtime fastapi] [--model iris-logreg] [--rate 200]
        [--seconds 8] [--pairs 4] [--sample-rate 100]

One server is started; then `--pairs` times, a profiled and an unprofiled cell of `--seconds` each at an
open-loop Poisson `--rate`, in alternating order (ABBA...), so drift falls on both alike. Each pair gives the
ratio profiled / unprofiled of the p50 and p99 latency and of the server's CPU-seconds per 1,000
predictions; the medians of the pairs' ratios are the overhead. A benchmark, not a test: these machines
drift 10-15% from minute to minute, so read the ratios against the spread of the pairs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.config import load_run_length, load_runtime, load_scenario, with_options
from bench.measure.cell import measure_cell, skeleton, with_deployment
from bench.measure.parity import check_parity
from bench.measure.plan import limits_for, plan_measurements
from bench.models.catalog import get_spec
from bench.models.registry import resolve
from bench.results.schema import Cell, Fairness
from bench.server_time.recorder import ProfileSettings
from bench.targets.launch import default_cpu_plan
from bench.targets.local import LocalTarget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="fastapi")
    parser.add_argument("--model", default="iris-logreg")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--sample-rate", type=int, default=100)
    parser.add_argument("--blocking", action="store_true", help="py-spy pauses the server at each sample")
    args = parser.parse_args()

    cpus = default_cpu_plan()
    target = LocalTarget(cpus)
    runtime = load_runtime(args.runtime)
    model = resolve(get_spec(args.model))
    scenario = with_options(load_scenario("smoke"), rate=args.rate, warmup_s=2.0, duration_s=args.seconds,
                            name="profile-overhead")
    length = load_run_length("full")
    (measurement,) = plan_measurements(scenario, length)
    limits = limits_for(scenario, length, measurement)
    out = Path(tempfile.mkdtemp(prefix="profile-overhead-"))
    (out / "load").mkdir()
    settings = ProfileSettings(out, cpus.generator, args.sample_rate, blocking=args.blocking)
    target.provision(runtime, out / "servers", print)
    print(f"{runtime.name} x {model.name}: {args.pairs} pairs of {args.seconds:g} s at {args.rate:g} req/s, "
          f"py-spy at {args.sample_rate} Hz{' blocking' if args.blocking else ''}; "
          f"server CPUs {list(cpus.server)}, generator {list(cpus.generator)}")
    results: dict[bool, list[Cell]] = {True: [], False: []}
    with target.deploy(runtime, model, out / "servers") as deployment:
        parity = check_parity(deployment.endpoint, model, runtime.parity_tolerance(model.spec))
        fairness = Fairness(server_cpus=cpus.server, generator_cpus=cpus.generator)
        index = 0
        for pair in range(args.pairs):
            for profiled in ((True, False) if pair % 2 == 0 else (False, True)):
                index += 1
                cell = with_deployment(skeleton(scenario, "local", runtime, model.name, measurement, index),
                                       deployment, parity, fairness)
                measured, _ = measure_cell(cell, deployment, model, measurement, scenario, limits, out,
                                           cpus.generator, lambda _tick: None,
                                           profiling=settings if profiled else None)
                results[profiled].append(measured)
                samples = measured.server_profile.samples if measured.server_profile else 0
                print(f"  pair {pair + 1} {'profiled  ' if profiled else 'unprofiled'} p50 {measured.latency.p50:.3f} "
                      f"ms  p99 {measured.latency.p99:.3f} ms  CPU-s/1000 {measured.server.cpu_s_per_1000 or 0:.3f}"
                      f"  {measured.rates.throughput_rps:.1f} req/s  valid {measured.validity.valid}"
                      + (f"  samples {samples}" if profiled else ""))
    for name, read in (("p50", lambda c: c.latency.p50), ("p99", lambda c: c.latency.p99),
                       ("CPU-s per 1000", lambda c: c.server.cpu_s_per_1000)):
        ratios = [read(a) / read(b) for a, b in zip(results[True], results[False], strict=True)
                  if read(a) and read(b)]
        if ratios:
            print(f"{name}: profiled / unprofiled, median of {len(ratios)} pairs {statistics.median(ratios):.3f} "
                  f"(pairs {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"run folder (profiles, logs): {out}")


if __name__ == "__main__":
    main()
