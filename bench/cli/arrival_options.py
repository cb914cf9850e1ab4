"""How requests arrive, from the command line: a synthetic process (--arrival, --arrival-cv) or a recorded trace
(--arrivals FILE, --time-scale), applied to the scenario's open-loop load."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.config import Scenario
    from bench.load.trace import Trace

MAX_TIME_SCALES = 12


def add_arrival_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("arrivals (open loop)")
    group.add_argument("--arrival", choices=["constant", "poisson", "gamma"],
                       help="override the scenario's arrival process: evenly spaced, Poisson, or gamma gaps (bursty "
                            "with --arrival-cv above 1)")
    group.add_argument("--arrival-cv", type=float, metavar="CV",
                       help="gamma arrivals: the gaps' coefficient of variation (1 is Poisson's; 2-4 is bursty "
                            "traffic); implies --arrival gamma")
    group.add_argument("--arrivals", metavar="FILE",
                       help="replay recorded arrivals, open loop and looped: a CSV (with a header) or JSON-lines file "
                            "with a timestamp, timestamp_ms, timestamp_us, interval, interval_ms or interval_us column")
    group.add_argument("--time-scale", metavar="S[,S...]",
                       help="--arrivals: replay S times as fast as recorded (default 1); several values measure "
                            "one cell each, as a sweep")


def _time_scales(text: str) -> list[float]:
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        scales = []
    if not scales or len(scales) > MAX_TIME_SCALES or not all(0 < scale <= 1e6 for scale in scales):
        raise BenchError(f"--time-scale {text}: not a list of positive numbers",
                         hint=f"for example --time-scale 1 or --time-scale 0.5,1,2 (at most {MAX_TIME_SCALES})")
    return scales


def loaded_trace(args: argparse.Namespace) -> Trace | None:
    """The --arrivals file, read and checked (a one-line error for anything that cannot be replayed)."""
    from bench.load.trace import read_trace

    path: str | None = getattr(args, "arrivals", None)
    return None if path is None else read_trace(str(Path(path).resolve()))


def with_arrivals(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with the arrival options applied (validated as its YAML is)."""
    from bench.config import with_options

    arrival: str | None = getattr(args, "arrival", None)
    cv: float | None = getattr(args, "arrival_cv", None)
    scales: str | None = getattr(args, "time_scale", None)
    trace = loaded_trace(args)
    if trace is None and scales is not None:
        raise BenchError("--time-scale replays a trace: it needs --arrivals FILE",
                         hint="for a synthetic load set the rate with --scenario, or add --arrivals FILE")
    if trace is not None and (arrival is not None or cv is not None):
        raise BenchError("--arrivals replays a recorded trace; --arrival and --arrival-cv describe a synthetic one",
                         hint="drop --arrival/--arrival-cv, or drop --arrivals")
    if cv is not None and arrival not in (None, "gamma"):
        raise BenchError(f"--arrival-cv is the gamma process's burstiness, not {arrival}'s",
                         hint="use --arrival gamma --arrival-cv CV (CV 1 is Poisson)")
    if trace is not None:
        if getattr(args, "expect_workers", None) or getattr(args, "cluster_workers", None):
            raise BenchError("--arrivals with remote workers: the trace file is on this host only",
                             hint="replay a trace with this host's generator processes (--generator-processes N)")
        rates = [scale * trace.mean_rps for scale in _time_scales(scales or "1")]
        load: dict[str, object] = {"rate": rates[0], "sweep": None} if len(rates) == 1 else {"rate": None,
                                                                                             "sweep": rates}
        return with_options(scenario, loop="open", users=None, stages=None, arrival="trace",
                            arrivals_file=str(Path(args.arrivals).resolve()), **load)
    if arrival is None and cv is None:
        return scenario
    if scenario.loop != "open":
        raise BenchError(f"--arrival with the closed-loop scenario {scenario.name}: a closed loop has no arrivals",
                         hint="choose an open-loop scenario (--scenario smoke, steady, ...)")
    return with_options(scenario, arrival=arrival or "gamma", arrival_cv=cv if cv is not None else 1.0)
