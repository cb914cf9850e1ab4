"""`bench capacity`: the highest open-loop rate within an SLO for each runtime x model, with an interval."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.options import Commands, writable
from bench.cli.run import add_measure_options, measure
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.config import ModelSpec, RuntimeSpec, Slo

SLO_FORM = re.compile(r"^(p50|p90|p95|p99|p999):(\d+(?:\.\d+)?)ms$")
# half the open-loop ceiling `bench calibrate` measured on one core here (12,000 req/s; a slow day halves it)
MAX_RATE_PER_PROCESS = 6000.0
OPTIONS: tuple[tuple[str, type, object, str], ...] = (
    ("--slo", str, "p99:50ms", "PERCENTILE:MSms, for example p99:50ms (default)"),
    ("--scenario", str, "smoke", "scenario whose warm-up, duration and limits each probe takes (its rate and "
     "arrivals are the search's: Poisson)"),
    ("--start-rate", float, 50.0, "first rate probed, req/s (default 50)"),
    ("--resolution", float, 5.0, "stop bisecting at this width, %% (default 5)"),
    ("--max-rate", float, None, "highest rate probed (default: 6000 req/s per generator process, the open-loop "
     "generator's ceiling)"),
    ("--repeats", int, 2, "extra probes at each end of the final bracket, for the interval (default 2)"),
    ("--json", str, None, "write the capacity list as JSON to this file"),
)


def add_parser(commands: Commands) -> None:
    capacity = commands.add_parser("capacity", help="search the highest open-loop rate within an SLO")
    add_measure_options(capacity)
    for flag, kind, default, text in OPTIONS:
        capacity.add_argument(flag, type=kind, default=default, help=text)
    capacity.set_defaults(handler=cmd_capacity)


def parse_slo(text: str) -> Slo:
    from bench.config import PERCENTILE_NAMES, Slo

    match = SLO_FORM.match(text.strip().lower())
    if not match or float(match.group(2)) <= 0:
        raise BenchError(f"--slo {text!r}: expected PERCENTILE:MSms with a percentile of {', '.join(PERCENTILE_NAMES)}",
                         hint="for example --slo p99:50ms")
    return Slo(percentile=match.group(1), ms=float(match.group(2)))  # type: ignore[arg-type]


def cmd_capacity(args: argparse.Namespace) -> int:
    from bench.cli.console import capacity_table, console, out
    from bench.cli.run import scenario_of
    from bench.config import load_profile
    from bench.measure.capacity import SearchSettings
    from bench.measure.capacity_run import CapacityPlan, probe_scenario

    slo = parse_slo(args.slo)
    if args.json:
        writable(Path(args.json))
    scenario = probe_scenario(scenario_of(args), slo)
    ceiling = args.max_rate or MAX_RATE_PER_PROCESS * scenario.generator_processes
    if args.start_rate <= 0 or ceiling < args.start_rate or not 0 < args.resolution < 100 or args.repeats < 0:
        raise BenchError("--start-rate, --max-rate, --resolution or --repeats out of range",
                         hint="a positive start rate no higher than --max-rate, a resolution between 0 and 100%, "
                              "repeats of 0 or more")
    settings = SearchSettings(start_rps=args.start_rate, resolution=args.resolution / 100, max_rps=ceiling,
                              min_rps=min(1.0, args.start_rate), repeats=args.repeats, slo_ms=slo.ms)
    profile = load_profile(args.profile)

    def plan(runtime: RuntimeSpec, model: ModelSpec) -> CapacityPlan:
        return CapacityPlan(runtime, model.name, scenario, profile, settings)

    console.print(f"capacity search: {slo.percentile} <= {slo.ms:g} ms, from {settings.start_rps:g} req/s up to "
                  f"{ceiling:g}, resolution {args.resolution:g}%")
    results = measure(args, scenario.model_copy(update={"name": f"capacity-{scenario.name}"}), plan)
    out.print(capacity_table(results.capacity))
    if args.json:
        Path(args.json).write_text(json.dumps([entry.model_dump(mode="json") for entry in results.capacity],
                                              indent=1) + "\n")
        console.print(f"wrote {args.json}")
    return 0 if any(entry.capacity_rps is not None for entry in results.capacity) else 1
