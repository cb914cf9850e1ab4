"""`bench run`: load-test runtimes and write reports/<run-id>/ (and `--dry-run` for the KServe target)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.arrival_options import add_arrival_options, with_arrivals
from bench.cli.options import (
    Commands,
    add_cpu_options,
    add_docker_options,
    add_models,
    add_old_spelling,
    add_runtimes,
    add_url_options,
    cpus,
    image_settings,
    models,
    over_protocols,
    runtimes,
    target_options,
)
from bench.cli.remote_options import add_remote_options, remote_of, run_token
from bench.errors import BenchError
from bench.load.worker_auth import TOKEN_ENV
from bench.targets.factory import TARGETS

MAX_ROUNDS = 20
MAX_SAMPLE_RATE = 1000
SAMPLED_TARGETS = ("local", "docker")  # where py-spy can reach the server's process tree

if TYPE_CHECKING:
    from bench.config import ModelSpec, RuntimeSpec, Scenario
    from bench.measure.run import PlanFactory
    from bench.results.schema import RunResults
    from bench.targets.launch import CpuPlan


def add_measure_options(parser: argparse.ArgumentParser) -> None:
    """What every measuring command takes: runtimes, models, run length, target, CPUs, output, MLflow."""
    add_runtimes(parser)
    add_models(parser, default=None)
    parser.add_argument("--length", default="quick", help="how long to measure: smoke, quick or full (scales "
                        "every warm-up and duration; default %(default)s)")
    add_old_spelling(parser, "--profile", "--length", "length")
    parser.add_argument("--target", default="local", choices=list(TARGETS))
    parser.add_argument("--out", metavar="DIR", help="run folder (default reports/<run-id>)")
    add_cpu_options(parser)
    parser.add_argument("--generator-processes", type=int, help="override the scenario's generator processes")
    parser.add_argument("--seed", type=int, help="override the scenario's arrival seed: another Poisson draw "
                        "(compares only with runs of the same seed)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    add_docker_options(parser)
    parser.add_argument("--memory", default="4g", help="docker and kserve targets: memory limit per server "
                        "(bench tune: the memory budget of every configuration)")
    parser.add_argument("--price-per-core-hour", type=float, metavar="PRICE", help="what one server core costs per "
                        "hour: the report adds the cost per million predictions at capacity")
    add_url_options(parser)
    add_arrival_options(parser)


def add_parser(commands: Commands) -> None:
    run = commands.add_parser("run", help="load-test runtimes and write reports/<run-id>/")
    add_measure_options(run)
    run.add_argument("--scenario", default="smoke", help="scenario name or YAML path")
    run.add_argument("--rounds", type=int, default=1, help="measure the runtimes in N interleaved rounds, the order "
                     "rotated each round, and rank only where the rounds' intervals separate (default 1)")
    run.add_argument("--sample-server", action="store_true", help="sample each server's processes with py-spy over "
                     "the measured window: where its time goes (model, serialisation, HTTP, framework), with a "
                     "flame graph in the report (local and docker targets)")
    run.add_argument("--sample-rate", type=int, default=100, metavar="HZ", help="--sample-server's samples per "
                     "second per thread (default %(default)s; the overhead it adds: scripts/sampling_overhead.py)")
    add_old_spelling(run, "--profile-server", "--sample-server", "sample_server", flag=True)
    add_old_spelling(run, "--profile-rate", "--sample-rate", "sample_rate", type=int)
    run.add_argument("--dry-run", action="store_true", help="kserve target: write every manifest to --out "
                     "DIR/manifests and print every command, applying nothing")
    add_remote_options(run)
    run.set_defaults(handler=cmd_run)


def runtimes_of(args: argparse.Namespace) -> list[RuntimeSpec]:
    """The runtimes asked for, over the protocols asked for; none with --target url, whose endpoint is the
    runtime (the target adds it)."""
    if args.target == "url":
        return []
    specs = runtimes(args.runtime)
    return over_protocols(specs, args.protocol) if args.protocol else specs


def scenario_of(args: argparse.Namespace) -> Scenario:
    """The scenario with --generator-processes, --seed and the arrival options applied."""
    from bench.config import load_scenario, with_options

    scenario = load_scenario(args.scenario)
    remote = remote_of(args)  # checked first: its count is the number of generator processes
    processes = args.generator_processes if remote is None else remote.count
    options = {key: value for key, value in (("generator_processes", processes), ("seed", args.seed))
               if value is not None}
    return with_arrivals(with_options(scenario, **options) if options else scenario, args)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import load_run_length
    from bench.measure.plan import plan_measurements

    specs, scenario = runtimes_of(args), scenario_of(args)
    if args.dry_run:
        model_specs = models(args, seed=scenario.seed)
        plan = cpus(args)
        measurements = len(plan_measurements(scenario, load_run_length(args.length)))
        return _dry_run(args, specs, model_specs, scenario, measurements, plan)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        raise BenchError(f"--rounds {args.rounds}: between 1 and {MAX_ROUNDS}", hint="for example --rounds 3")
    results = measure(args, scenario)
    return 0 if any(cell.validity.valid for cell in results.cells) else exit_without_a_valid_cell(results)


def exit_without_a_valid_cell(results: RunResults) -> int:
    """Exit status 1: the run finished and kept everything, but nothing it measured can be trusted."""
    from bench.cli.console import console

    console.print(f"no valid cell in {len(results.cells)}: see the reasons above (exit status 1)")
    return 1


def price_of(args: argparse.Namespace) -> float | None:
    price: float | None = args.price_per_core_hour
    if price is not None and not price > 0:
        raise BenchError(f"--price-per-core-hour {price:g}: a price is positive", hint="for example 0.04")
    return price


def sample_rate(args: argparse.Namespace) -> int | None:
    """--sample-server's sampling rate, checked (None: not asked for): py-spy must be installed and the
    server's processes on this machine."""
    if not getattr(args, "sample_server", False):
        return None
    from bench.server_time.recorder import py_spy

    rate: int = args.sample_rate
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        raise BenchError(f"--sample-rate {rate}: between 1 and {MAX_SAMPLE_RATE} samples per second",
                         hint="for example --sample-rate 100")
    if args.target not in SAMPLED_TARGETS:
        raise BenchError(f"--sample-server with --target {args.target}: the server's processes are not on this "
                         "machine for py-spy to sample", hint=f"use --target {' or '.join(SAMPLED_TARGETS)}")
    if getattr(args, "expect_workers", None):
        raise BenchError("--sample-server with --expect-workers: py-spy would sample the planned window, but "
                         "remote workers start the load later, when the last one is ready",
                         hint="sample with a local generator (drop --expect-workers), then measure with workers")
    py_spy()
    return rate


def measure(args: argparse.Namespace, scenario: Scenario, plans: PlanFactory | None = None) -> RunResults:
    """The measuring part every such command shares: target, run folder, progress, the run, the report."""
    from bench.cli.console import ConsoleRunUI, console, out, print_published, results_table
    from bench.config import load_run_length
    from bench.events import EventHook
    from bench.measure.run import RunOptions, run_benchmark
    from bench.report.publish import publish
    from bench.results.environment import new_run_id
    from bench.results.schema import RunFairness
    from bench.results.store import claim_folder
    from bench.targets.factory import make_target

    profiling = sample_rate(args)  # checked before anything starts
    specs, model_specs = runtimes_of(args), models(args, seed=scenario.seed)
    remote = remote_of(args)
    length = load_run_length(args.length)
    plan = cpus(args)
    target = make_target(args.target, target_options(args, plan))
    for removed in target.reaped:
        console.print(f"removed {removed}")
    specs = target.expand_runtimes(specs)
    run_id = new_run_id(f"{scenario.name}-{args.length}")
    out_dir = Path(args.out) if args.out else Path("reports") / run_id
    claim_folder(out_dir, run_id)
    options = RunOptions(runtimes=specs, models=model_specs, scenario=scenario, profile=length, target=target,
                         out_dir=out_dir.resolve(), run_id=run_id, generator_cpus=plan.generator,
                         fairness=RunFairness(server_cpus=plan.server, generator_cpus=plan.generator,
                                              cpu_shared=bool(set(plan.server) & set(plan.generator))),
                         rounds=getattr(args, "rounds", 1), price_per_core_hour=price_of(args),
                         profile_rate_hz=profiling, remote=remote, generator_priority=plan.generator_priority)
    ui = ConsoleRunUI(out_dir / "run.log")
    if not args.no_mlflow:
        from bench.models.registry import tracking_uri

        tracking_uri()  # fail on a bad MLFLOW_TRACKING_URI before any measuring, not after
    console.print(f"run {run_id}: {len(specs)} runtime(s) x {len(model_specs)} model(s), scenario {scenario.name}, "
                  f"length {length.name}; server CPUs {list(plan.server)}, generator CPUs {list(plan.generator)}")
    if remote is not None and remote.in_cluster:
        console.print(f"each cell waits {remote.wait_s:.0f} s for {remote.count} worker pod(s), started in the cluster "
                      f"with the first InferenceService; they join {remote.bind}:{remote.port}")
    elif remote is not None:
        token, made_here = run_token()
        given = f"{TOKEN_ENV}={token}" if made_here else f"{TOKEN_ENV} set as here"
        console.print(f"each cell waits {remote.wait_s:.0f} s for {remote.count} worker(s): on each worker host run "
                      f"`bench worker --master {remote.bind}:{remote.port}` with {given}")
    try:
        store = run_benchmark(options, EventHook(ui), plans)
    except KeyboardInterrupt:
        ui.close()  # the report is left to `bench report`: rendering it would keep a waiting user 2 s longer
        if (out_dir / "results.json").exists():
            console.print(f"interrupted: every finished cell and the partial one are in {out_dir / 'results.json'}; "
                          f"render them with: bench report {out_dir}")
        raise
    ui.close()
    out.print(results_table(store.results))
    if store.results.rounds:
        from bench.cli.comparison_tables import rounds_table

        out.print(rounds_table(store.results.rounds))
    console.print(f"results: {store.results_path}")
    print_published(publish(out_dir, mlflow=not args.no_mlflow))
    return store.results


def _dry_run(args: argparse.Namespace, specs: list[RuntimeSpec], model_specs: list[ModelSpec], scenario: Scenario,
             measurements: int, plan: CpuPlan) -> int:
    """--dry-run: every manifest rendered and validated into --out, every command printed; nothing applied."""
    from bench.cli.console import command, console
    from bench.events import EventHook, Message, say_to
    from bench.targets.kserve.target import dry_run

    if args.target != "kserve":
        raise BenchError(f"--dry-run is for --target kserve, not {args.target}", hint="add --target kserve")
    if not args.out:
        raise BenchError("--dry-run needs --out DIR", hint="the manifests are written to DIR/manifests/")
    out_dir = Path(args.out)
    try:
        (out_dir / "manifests").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create {out_dir}: {exc.strerror}", hint="choose a writable --out folder") from None
    base_image, offline = image_settings(args)
    dry_run(specs, model_specs, scenario.name, measurements, out_dir, say_to(EventHook[Message](command)), plan,
            base_image, offline, args.memory, scenario.generator_processes, remote_of(args))
    console.print(f"dry run: manifests in {out_dir / 'manifests'}, commands in {out_dir / 'commands.sh'}; "
                  "nothing was applied")
    return 0
