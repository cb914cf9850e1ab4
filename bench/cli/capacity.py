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
    from collections.abc import Sequence

    from pydantic import BaseModel

    from bench.config import ModelSpec, RuntimeSpec, Scenario, Slo
    from bench.measure.capacity import SearchSettings

SLO_FORM = re.compile(r"^(p50|p90|p95|p99|p999):(\d+(?:\.\d+)?)ms$")
# half the open-loop ceiling `bench calibrate` measured on one core here (12,000 req/s; a slow day halves it)
MAX_RATE_PER_PROCESS = 6000.0
OPTIONS: tuple[tuple[str, type, object, str], ...] = (
    ("--slo", str, "p99:50ms", "PERCENTILE:MSms (default %(default)s)"),
    ("--scenario", str, "smoke", "scenario whose warm-up, duration and limits each probe takes (its rate and "
     "arrivals are the search's: Poisson; default %(default)s)"),
    ("--start-rate", float, 50.0, "first rate probed, req/s (default %(default)s)"),
    ("--resolution", float, 5.0, "stop bisecting at this width, %% (default %(default)s)"),
    ("--max-rate", float, None, "highest rate probed (default: 6000 req/s per generator process, the open-loop "
     "generator's ceiling)"),
    ("--repeats", int, 2, "extra probes at each end of the final bracket, for the interval (default %(default)s)"),
    ("--json", str, None, "write the run-level list (capacity; bench tune: tuning) as JSON to this file"),
)


def add_parser(commands: Commands) -> None:
    capacity = commands.add_parser("capacity", help="search the highest open-loop rate within an SLO")
    add_search_options(capacity)
    capacity.set_defaults(handler=cmd_capacity)


def add_search_options(parser: argparse.ArgumentParser, **defaults: object) -> None:
    """bench run's measuring options and the search's own; defaults overrides some (bench tune's)."""
    add_measure_options(parser)
    for flag, kind, default, text in OPTIONS:
        parser.add_argument(flag, type=kind, default=defaults.get(flag.lstrip("-").replace("-", "_"), default),
                            help=text)


def parse_slo(text: str) -> Slo:
    from bench.config import PERCENTILE_NAMES, Slo

    match = SLO_FORM.match(text.strip().lower())
    if not match or float(match.group(2)) <= 0:
        raise BenchError(f"--slo {text!r}: expected PERCENTILE:MSms with a percentile of {', '.join(PERCENTILE_NAMES)}",
                         hint="for example --slo p99:50ms")
    return Slo(percentile=match.group(1), ms=float(match.group(2)))  # type: ignore[arg-type]


def search_settings(args: argparse.Namespace) -> tuple[Slo, Scenario, SearchSettings]:
    """The SLO, the probes' scenario and the search settings bench capacity and bench tune share."""
    from bench.cli.options import cpus
    from bench.cli.run import scenario_of
    from bench.measure.capacity import SearchSettings
    from bench.measure.capacity_run import probe_scenario

    slo = parse_slo(args.slo)
    scenario = probe_scenario(scenario_of(args), slo)
    if args.generator_processes is None:  # a search goes as high as the generator CPUs allow: a process on each
        scenario = scenario.model_copy(update={"generator_processes": max(scenario.generator_processes,
                                                                          len(cpus(args).generator))})
    ceiling = args.max_rate or MAX_RATE_PER_PROCESS * scenario.generator_processes
    if args.start_rate <= 0 or ceiling < args.start_rate or not 0 < args.resolution < 100 or args.repeats < 0:
        raise BenchError("--start-rate, --max-rate, --resolution or --repeats out of range",
                         hint="a positive start rate no higher than --max-rate, a resolution between 0 and 100%, "
                              "repeats of 0 or more")
    return slo, scenario, SearchSettings(start_rps=args.start_rate, resolution=args.resolution / 100,
                                         max_rps=ceiling, min_rps=min(1.0, args.start_rate), repeats=args.repeats,
                                         slo_ms=slo.ms)


def write_json(path: str | None, entries: Sequence[BaseModel]) -> None:
    if path:
        Path(path).write_text(json.dumps([entry.model_dump(mode="json") for entry in entries], indent=1) + "\n")
        console_print(f"wrote {path}")


def console_print(text: str) -> None:
    from bench.cli.console import console

    console.print(text)


def cmd_capacity(args: argparse.Namespace) -> int:
    from bench.cli.arrival_options import loaded_trace
    from bench.cli.comparison_tables import capacity_table
    from bench.cli.console import out
    from bench.config import load_run_length
    from bench.measure.capacity_run import CapacityPlan

    if args.json:
        writable(Path(args.json))
    slo, scenario, settings = search_settings(args)
    length = load_run_length(args.length)

    def plan(runtime: RuntimeSpec, model: ModelSpec) -> CapacityPlan:
        return CapacityPlan(runtime, model.name, scenario, length, settings)

    console_print(f"capacity search: {slo.percentile} <= {slo.ms:g} ms, from {settings.start_rps:g} req/s up to "
                  f"{settings.max_rps:g}, resolution {args.resolution:g}%")
    results = measure(args, scenario.model_copy(update={"name": f"capacity-{scenario.name}"}), plan)
    out.print(capacity_table(results.capacity))
    trace = loaded_trace(args)
    for entry in results.capacity:
        if trace is not None and entry.capacity_rps is not None:  # under a trace: how much faster it may play
            console_print(f"{entry.runtime} x {entry.model}: the trace holds the SLO up to time scale "
                          f"{entry.capacity_rps / trace.mean_rps:.3g} (its recorded mean {trace.mean_rps:.4g} req/s)")
    write_json(args.json, results.capacity)
    return 0 if any(entry.capacity_rps is not None for entry in results.capacity) else 1
