"""`bench tune`: each runtime's knobs searched under one CPU and memory budget, best against best."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.capacity import add_search_options, console_print, search_settings, write_json
from bench.cli.options import Commands, add_old_spelling, writable
from bench.cli.run import SAMPLED_TARGETS, measure
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.config import ModelSpec, RuntimeSpec
    from bench.measure.tune_run import TunePlan

MEMORY_FORM = re.compile(r"^(\d+(?:\.\d+)?)([kmg])b?$")
UNIT_MB = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}


def add_parser(commands: Commands) -> None:
    tune = commands.add_parser("tune", help="search each runtime's knobs for its highest capacity within an SLO")
    # short probes, a coarser bracket and no repeats: a tuning run measures many configurations
    add_search_options(tune, scenario="probe", resolution=10.0, repeats=0)
    tune.add_argument("--cpus", type=int, help="server CPUs in the budget: the last N usable CPUs (the generator "
                      "gets the others); default: --server-cpus or the last one")
    tune.add_argument("--max-configs", type=int, default=6, help="configurations measured per runtime at most "
                      "(default %(default)s)")
    tune.add_argument("--no-sample-server", action="store_true", help="skip the sampled cell of each runtime's best "
                      "configuration (py-spy over one cell at the common rate: where its time goes)")
    add_old_spelling(tune, "--no-server-profile", "--no-sample-server", "no_sample_server", flag=True)
    tune.set_defaults(handler=cmd_tune)


def memory_mb(text: str) -> float:
    match = MEMORY_FORM.match(text.strip().lower())
    if not match:
        raise BenchError(f"--memory {text!r}: expected a size like 512m or 4g", hint="for example --memory 4g")
    return float(match.group(1)) * UNIT_MB[match.group(2)]


def apply_cpu_budget(args: argparse.Namespace) -> None:
    """--cpus N as --server-cpus (the last N usable CPUs) and --generator-cpus (the rest)."""
    if args.cpus is None:
        return
    usable = sorted(os.sched_getaffinity(0))
    if not 0 < args.cpus < len(usable):
        raise BenchError(f"--cpus {args.cpus}: this machine has {len(usable)} usable CPU(s) and the load "
                         "generator needs one", hint=f"choose 1 to {len(usable) - 1}")
    if args.server_cpus or args.generator_cpus:
        raise BenchError("--cpus with --server-cpus or --generator-cpus", hint="give either --cpus or the CPU lists")
    args.server_cpus = ",".join(map(str, usable[-args.cpus:]))
    args.generator_cpus = ",".join(map(str, usable[:-args.cpus]))


def cmd_tune(args: argparse.Namespace) -> int:
    from bench.cli.comparison_tables import tuning_table
    from bench.cli.console import out
    from bench.cli.options import cpus
    from bench.config import load_run_length
    from bench.measure.tune_run import TunePlan

    if args.target == "url":
        raise BenchError("bench tune starts each configuration itself; --target url measures a running endpoint",
                         hint="use bench run or bench capacity with --target url")

    if args.json:
        writable(Path(args.json))
    if args.max_configs < 1:
        raise BenchError(f"--max-configs {args.max_configs}: at least one", hint="for example --max-configs 6")
    budget_mb = memory_mb(args.memory)
    apply_cpu_budget(args)
    server_cpus = len(cpus(args).server)
    slo, scenario, settings = search_settings(args)
    length = load_run_length(args.length)
    profile_best = not args.no_sample_server and args.target in SAMPLED_TARGETS

    def plan(runtime: RuntimeSpec, model: ModelSpec) -> TunePlan:
        return TunePlan(runtime, model.name, scenario, length, settings, server_cpus, budget_mb, args.max_configs,
                        profile_best=profile_best)

    console_print(f"tuning: {slo.percentile} <= {slo.ms:g} ms on {server_cpus} server CPU(s) and {args.memory} of "
                  f"memory, at most {args.max_configs} configurations per runtime")
    results = measure(args, scenario.model_copy(update={"name": f"tune-{scenario.name}"}), plan)
    out.print(tuning_table(results.tuning, results.price_per_core_hour))
    write_json(args.json, results.tuning)
    return 0 if any(entry.best.capacity_rps is not None for entry in results.tuning) else 1
