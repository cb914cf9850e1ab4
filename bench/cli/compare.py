"""`bench compare` (the regression gate) and `bench baseline save` (what it compares against)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.options import Commands, command_group
from bench.errors import BenchError


def add_parser(commands: Commands) -> None:
    compare = commands.add_parser("compare", help="regression verdicts between two runs (exit 1 on a regression)")
    compare.add_argument("baseline", metavar="BASELINE", help="run folder, results.json or baseline file")
    compare.add_argument("current", metavar="CURRENT", help="run folder, results.json or baseline file")
    compare.add_argument("--fail-on", action="append", default=[], metavar="METRIC:PCT",
                         help="threshold of one metric (p50 p90 p95 p99 p999 mean throughput), repeatable; "
                              "defaults p50:10%%, p99:50%%, throughput:-10%%")
    compare.add_argument("--format", choices=["text", "md", "json"], default="text")
    compare.add_argument("--allow-env-change", action="store_true",
                         help="compare cells whose environment fingerprint differs (noted in the output)")
    compare.set_defaults(handler=cmd_compare)

    baseline = command_group(commands, "baseline", "compact baselines to commit and compare against")
    save = baseline.add_parser("save", help="write a run's baseline: fingerprints, figures, a seeded sample of "
                               "latencies")
    save.add_argument("run_dir", metavar="RUN_DIR")
    save.add_argument("file", metavar="FILE")
    save.set_defaults(handler=cmd_baseline_save)


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 no regression, 1 a regression, 2 (as an error) cells that could not be judged."""
    from bench.compare.gate import compare, parse_thresholds
    from bench.compare.render import render
    from bench.compare.side import load_side

    thresholds = parse_thresholds(args.fail_on)
    comparison = compare(load_side(Path(args.baseline)), load_side(Path(args.current)), thresholds,
                         allow_env_change=args.allow_env_change)
    sys.stdout.write(render(comparison, args.format))
    if comparison.exit_code == 2:  # cells that could not be judged: neither a pass nor a regression
        raise BenchError(comparison.headline(), hint=comparison.hint())
    return comparison.exit_code


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from bench.cli.console import out
    from bench.results.baseline import save_baseline

    path = save_baseline(Path(args.run_dir), Path(args.file))
    out.print(f"baseline: {path} ({path.stat().st_size / 1024:.0f} kB)", markup=False)
    return 0
