"""The `bench` command: parse arguments, call the library, map BenchError to exit code 2.

Exit codes: 0 success, 1 a verdict failed (parity mismatch), 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from bench import __version__
from bench.config import RuntimeSpec, load_runtimes, split_names, state_dir
from bench.errors import BenchError, DeployError
from bench.load.driver import LiveTick
from bench.measure.run import RunUI
from bench.targets.base import Target
from bench.targets.launch import CpuPlan

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _quiet_libraries() -> None:
    """MLflow and alembic log at INFO on every store access; keep the terminal for our own output."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # known noise: pickle format, torch +cpu
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*pickle or cloudpickle format.*")
    warnings.filterwarnings("ignore", module="mlflow.*")


def _models(value: str) -> list[str]:
    from bench.models.catalog import get_spec, model_names

    names = split_names(value, model_names(), "model")
    for name in names:
        get_spec(name)
    return names


# ---- models -------------------------------------------------------------------------------------


def cmd_models_build(args: argparse.Namespace) -> int:
    from bench.models.catalog import get_spec
    from bench.models.registry import ensure_model, tracking_uri

    console.print(f"MLflow tracking store: {tracking_uri()}")
    table = Table("model", "action", "version", "local copy", title="reference models")
    for name in _models(args.model):
        started = time.monotonic()
        local, action = ensure_model(get_spec(name), lambda msg: console.print(f"  {msg}"))
        table.add_row(name, f"{action} ({time.monotonic() - started:.1f} s)", local.version, str(local.model_dir))
    out.print(table)
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from bench.models.registry import list_registered, tracking_uri

    rows = list_registered()
    table = Table(*rows[0].keys(), title=f"models in {tracking_uri()}")
    for row in rows:
        table.add_row(*row.values())
    out.print(table)
    return 0


# ---- envs ---------------------------------------------------------------------------------------


def cmd_envs_build(args: argparse.Namespace) -> int:
    from bench.provision.envs import build_envs

    specs = load_runtimes(args.runtime)
    status = {spec.name: "waiting" for spec in specs}
    started = time.monotonic()

    def render() -> Table:
        table = Table("runtime", "status", title=f"building environments ({time.monotonic() - started:.0f} s)")
        for name, text in status.items():
            table.add_row(name, text)
        return table

    with Live(render(), console=console, refresh_per_second=4, transient=not console.is_terminal) as live:
        def report(runtime: str, text: str) -> None:
            status[runtime] = text
            live.update(render())

        results = build_envs(specs, report, force=args.force, parallel=args.parallel)
    table = Table("runtime", "result", "build s", "size MB", "packages", "path")
    failures = 0
    for spec in specs:
        env, built, error = results[spec.name]
        if env is None:
            failures += 1
            table.add_row(spec.name, "[red]failed[/red]", "-", "-", "-", error or "")
            continue
        table.add_row(spec.name, "built" if built else "cached", f"{env.build_s:.0f}" if built else "-",
                      f"{env.size_mb:.0f}", str(len(env.packages)), str(env.path))
    out.print(table)
    out.print(f"total {time.monotonic() - started:.1f} s")
    if failures:
        raise BenchError(f"{failures} environment(s) failed to build", hint="see the build log named above")
    return 0


# ---- serve --------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from bench.config import load_runtime
    from bench.models.catalog import get_spec
    from bench.models.registry import resolve
    from bench.targets.launch import default_cpu_plan
    from bench.targets.local import LocalTarget

    runtime = load_runtime(args.runtime)
    model = resolve(get_spec(args.model), lambda msg: console.print(msg))
    target = LocalTarget(cpus=default_cpu_plan(), host=args.host, port=args.port)
    log_dir = state_dir() / "logs" / f"serve-{datetime.now():%Y%m%d-%H%M%S}"
    console.print(f"starting {runtime.name} with {model.name} (version {model.version})...")
    try:
        deployment = target.deploy(runtime, model, log_dir)
    except DeployError as exc:
        console.print(exc.log_tail, markup=False)
        raise BenchError(exc.message, hint=f"full log in {log_dir}") from None
    with deployment:
        endpoint = deployment.endpoint
        console.print(f"[green]ready[/green] in {deployment.startup_s:.2f} s: POST {endpoint.predict_url} "
                      f"({endpoint.protocol}); log {deployment.log_path}; Ctrl-C stops")
        with deployment.log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            while deployment.alive():
                chunk = log.read()
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                time.sleep(0.2)
        raise BenchError(f"{runtime.name} exited on its own", hint=f"see {deployment.log_path}")


# ---- check --------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from bench.measure.check import CheckRow, run_check
    from bench.models.catalog import get_spec
    from bench.targets.local import LocalTarget

    runtimes = load_runtimes(args.runtime)
    models = [get_spec(name) for name in _models(args.model)]
    if args.json:
        _writable(Path(args.json))
    log_dir = state_dir() / "logs" / f"check-{datetime.now():%Y%m%d-%H%M%S}"
    target = LocalTarget()

    def on_row(row: CheckRow, done: int, total: int) -> None:
        colour = {"ok": "green", "mismatch": "yellow"}.get(row.status, "red")
        diff = "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.2g}"
        console.print(f"[{done}/{total}] {escape(row.runtime)} x {row.model}: [{colour}]{row.status}[/{colour}] "
                      f"max|diff| {diff}" + (f" ({escape(row.error)})" if row.error else ""), soft_wrap=True)

    rows = run_check(target, runtimes, models, log_dir, on_row,
                     lambda msg: console.print(f"  {escape(msg)}", style="dim", soft_wrap=True))
    table = Table("runtime", "model", "status", "max abs diff", "startup s", "RSS MB", "error", title="parity")
    for row in rows:
        colour = {"ok": "green", "mismatch": "yellow"}.get(row.status, "red")
        table.add_row(escape(row.runtime), row.model, f"[{colour}]{row.status}[/{colour}]",
                      "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.3g}",
                      "-" if row.startup_s is None else f"{row.startup_s:.2f}",
                      "-" if row.rss_mb is None else f"{row.rss_mb:.0f}", escape((row.error or "")[:80]))
    out.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps([row.as_dict() for row in rows], indent=2) + "\n")
        console.print(f"wrote {args.json}")
    console.print(f"server logs in {log_dir}")
    return 0 if all(row.ok for row in rows) else 1


def _writable(path: Path) -> None:
    if not path.parent.exists() or not os.access(path.parent, os.W_OK):
        raise BenchError(f"cannot write {path}: folder {path.parent} is missing or read-only",
                         hint="choose a path in an existing, writable folder")


# ---- run ----------------------------------------------------------------------------------------


class ConsoleRunUI(RunUI):
    """Progress on the terminal (one live status line), every message also in the run's run.log."""

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_path.open("a")
        self.started = time.monotonic()
        self.live = Live("", console=console, refresh_per_second=4, transient=True)

    def _log(self, message: str) -> None:
        self.log.write(f"{datetime.now():%H:%M:%S} {message}\n")
        self.log.flush()

    def say(self, message: str) -> None:
        self._log(message)
        console.print(f"  {escape(message)}", style="dim", soft_wrap=True)

    def cell_started(self, index: int, total: int, title: str) -> None:
        self._log(f"cell {index}/{total} {title}: load starting")
        self.live.start()
        self.live.update(f"cell {index}/{total} {escape(title)}: starting load")

    def tick(self, title: str, tick: LiveTick) -> None:
        p99 = "-" if tick.p99_ms is None else f"{tick.p99_ms:.1f} ms"
        phase = "starting" if tick.elapsed_s < 0 else f"{tick.elapsed_s:5.0f} s"
        line = (f"{escape(title)}: {phase}  {tick.requests_per_s:7.0f} req/s  p99 {p99}  errors {tick.errors}"
                f"  (run elapsed {time.monotonic() - self.started:.0f} s)")
        self.live.update(line)

    def cell_finished(self, index: int, total: int, cell: dict[str, Any]) -> None:
        self.live.stop()
        latency = cell.get("latency_ms") or {}
        figures = (f"{cell.get('throughput_rps') or 0:.1f} req/s, p50 {_ms(latency.get('p50'))}, "
                   f"p99 {_ms(latency.get('p99'))}, errors {cell.get('errors', 0)}")
        verdict = "[green]valid[/green]" if cell.get("valid") else \
            f"[yellow]invalid[/yellow] ({escape('; '.join(cell.get('invalid_reasons') or []))})"
        self._log(f"cell {index}/{total} {cell['runtime']} x {cell['model']} {cell['label']}: {figures}; "
                  f"valid={cell.get('valid')} {cell.get('invalid_reasons')}")
        console.print(f"[{index}/{total}] {cell['runtime']} x {cell['model']} {escape(cell['label'])}: "
                      f"{figures} {verdict}", soft_wrap=True)

    def close(self) -> None:
        self.live.stop()
        self.log.close()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def results_table(payload: dict[str, Any]) -> Table:
    table = Table("runtime", "model", "load", "batch", "requests", "req/s", "p50 ms", "p99 ms", "p99.9 ms",
                  "errors", "valid", title=f"run {payload['run_id']} ({payload['scenario']['name']})")
    for cell in payload["cells"]:
        latency = cell.get("latency_ms") or {}
        table.add_row(cell["runtime"], cell["model"], escape(cell["label"]), str(cell["batch_size"]),
                      str(cell.get("requests", 0)), f"{cell.get('throughput_rps') or 0:.1f}",
                      _ms(latency.get("p50")).removesuffix(" ms"), _ms(latency.get("p99")).removesuffix(" ms"),
                      _ms(latency.get("p999")).removesuffix(" ms"), str(cell.get("errors", 0)),
                      "[green]yes[/green]" if cell.get("valid") else "[yellow]no[/yellow]")
    return table


def make_target(args: argparse.Namespace, cpus: CpuPlan) -> Target:
    """The target named by --target, with its options; a missing prerequisite is a usage error."""
    if args.target == "local":
        from bench.targets.local import LocalTarget

        return LocalTarget(cpus)
    if args.target == "docker":
        from bench.provision.images import base_image_default, offline_default
        from bench.targets.docker import DockerTarget

        return DockerTarget(cpus, base_image=args.base_image or base_image_default(),
                            offline=args.offline or offline_default(), memory=args.memory)
    if args.target == "kserve":
        from bench.provision.images import base_image_default, offline_default
        from bench.targets.kserve.target import KServeTarget

        return KServeTarget(cpus, base_image=args.base_image or base_image_default(),
                            offline=args.offline or offline_default(), memory=args.memory)
    raise BenchError(f"target '{args.target}' is not available", hint="use --target local, docker or kserve")


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import load_profile, load_scenario
    from bench.measure.run import RunOptions, plan_measurements, run_benchmark
    from bench.models.catalog import get_spec
    from bench.results.store import new_run_id

    runtimes = load_runtimes(args.runtime)
    models = [get_spec(name) for name in _models(args.model)]
    scenario = load_scenario(args.scenario)
    if args.generator_processes:
        scenario = scenario.model_copy(update={"generator_processes": args.generator_processes})
    if args.seed is not None:
        if args.seed < 0:
            raise BenchError(f"--seed {args.seed}: a seed is a non-negative integer", hint="for example --seed 1")
        scenario = scenario.model_copy(update={"seed": args.seed})
    profile = load_profile(args.profile)
    cpus = default_cpu_plan_or_override(args)
    if args.dry_run:
        return _dry_run(args, runtimes, models, scenario, len(plan_measurements(scenario, profile)), cpus)
    target = make_target(args, cpus)
    runtimes = target.expand_runtimes(runtimes)
    run_id = new_run_id(f"{scenario.name}-{args.profile}")
    out_dir = Path(args.out) if args.out else Path("reports") / run_id
    if (out_dir / "results.json").exists():
        raise BenchError(f"{out_dir} already holds a run", hint="choose another --out folder")
    options = RunOptions(runtimes=runtimes, models=models, scenario=scenario, profile=profile,
                         target=target, out_dir=out_dir.resolve(), run_id=run_id,
                         generator_cpus=cpus.generator,
                         fairness={**cpus.as_dict(), "cpu_shared": bool(set(cpus.server) & set(cpus.generator))})
    ui = ConsoleRunUI(out_dir / "run.log")
    if not args.no_mlflow:
        from bench.models.registry import tracking_uri

        tracking_uri()  # fail on a bad MLFLOW_TRACKING_URI before any measuring, not after
    console.print(f"run {run_id}: {len(runtimes)} runtime(s) x {len(models)} model(s), scenario {scenario.name}, "
                  f"profile {profile.name}; server CPUs {list(cpus.server)}, generator CPUs {list(cpus.generator)}")
    try:
        store = run_benchmark(options, ui)
    except KeyboardInterrupt:
        ui.close()
        console.print(f"interrupted: partial results in {out_dir / 'results.json'}")
        if (out_dir / "results.json").exists():
            _publish(out_dir, mlflow=False)
        raise
    ui.close()
    out.print(results_table(store.payload))
    for sweep in store.payload.get("sweeps", []):
        out.print(f"sweep {sweep['runtime']} x {sweep['model']} (batch {sweep['batch_size']}): highest load within "
                  f"the SLO: {sweep['max_load_within_slo'] or 'none'}")
    console.print(f"results: {store.results_path}")
    _publish(out_dir, mlflow=not args.no_mlflow)
    return 0


def _dry_run(args: argparse.Namespace, runtimes: list[RuntimeSpec], models: list[Any], scenario: Any,
             measurements: int, cpus: CpuPlan) -> int:
    """--dry-run: every manifest rendered and validated into --out, every command printed; nothing applied."""
    from bench.provision.images import base_image_default, offline_default
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
    dry_run(runtimes, models, scenario.name, measurements, out_dir, lambda line: out.print(line, markup=False,
            highlight=False, soft_wrap=True), cpus, args.base_image or base_image_default(),
            args.offline or offline_default(), args.memory, scenario.generator_processes)
    console.print(f"dry run: manifests in {out_dir / 'manifests'}, commands in {out_dir / 'commands.sh'}; "
                  "nothing was applied")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from bench.targets.kserve.cluster import cluster_down, cluster_up
    from bench.targets.kserve.runner import Runner

    runner = Runner(dry_run=args.dry_run, echo=lambda line: out.print(line, markup=False, highlight=False,
                                                                       soft_wrap=True))
    say = runner.note if args.dry_run else (lambda message: console.print(f"  {escape(message)}"))
    if args.cluster_command == "up":
        cluster_up(runner, state_dir() / "kind", say)
    else:
        cluster_down(runner, say)
    return 0


def _publish(run_dir: Path, mlflow: bool) -> None:
    """Render report.html and summary.md, then log to MLflow; a failure here never loses the results."""
    from bench.report import log_run, render_run_reports

    try:
        html, markdown = render_run_reports([run_dir])
        console.print(f"report: {html}\nsummary: {markdown}")
    except BenchError as exc:
        console.print(f"[yellow]warning:[/yellow] report not rendered: {escape(exc.message)} "
                      f"(hint: bench report {run_dir})", soft_wrap=True)
        return
    summary_target = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_target:
        with open(summary_target, "a") as sink:
            sink.write(markdown.read_text())
    if mlflow:
        try:
            console.print(f"MLflow run: {log_run(run_dir)}")
        except BenchError as exc:
            console.print(f"[yellow]warning:[/yellow] not logged to MLflow: {escape(exc.message)}", soft_wrap=True)


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import render_run_reports

    html, markdown = render_run_reports([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None)
    out.print(f"report: {html}\nsummary: {markdown}")
    return 0


# ---- compare ------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare.gate import compare, parse_thresholds, render
    from bench.results.baseline import load_side

    thresholds = parse_thresholds(args.fail_on)
    comparison = compare(load_side(Path(args.baseline)), load_side(Path(args.current)), thresholds,
                         allow_env_change=args.allow_env_change)
    sys.stdout.write(render(comparison, args.format))
    if comparison.exit_code == 2:  # cells that could not be judged: neither a pass nor a regression
        raise BenchError(comparison.headline(), hint=comparison.hint())
    return comparison.exit_code


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from bench.results.baseline import save_baseline

    path = save_baseline(Path(args.run_dir), Path(args.file))
    out.print(f"baseline: {path} ({path.stat().st_size / 1024:.0f} kB)", markup=False)
    return 0


# ---- images and doctor ----------------------------------------------------------------------------


def cmd_images_build(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from bench.provision.containers import require_daemon
    from bench.provision.images import base_image_default, ensure_image, offline_default

    require_daemon()
    specs = load_runtimes(args.runtime)
    base_image = args.base_image or base_image_default()
    offline = args.offline or offline_default()
    log_dir = state_dir() / "logs" / f"images-{datetime.now():%Y%m%d-%H%M%S}"
    started = time.monotonic()

    def build(spec: RuntimeSpec) -> tuple[str, Any]:
        try:
            return spec.name, ensure_image(spec, base_image, offline, log_dir / f"{spec.name}.log",
                                           lambda name, text: console.print(f"  {name}: {escape(text)}"))
        except BenchError as exc:
            return spec.name, exc

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = dict(pool.map(build, specs))
    table = Table("runtime", "image", "result", "build s", "size MB", title=f"images on {base_image}"
                  + (" (offline build)" if offline else ""))
    failures = 0
    for spec in specs:
        info = results[spec.name]
        if isinstance(info, BenchError):
            failures += 1
            table.add_row(spec.name, "-", "[red]failed[/red]", "-", "-")
            console.print(f"[red]{spec.name}:[/red] {escape(str(info))}", soft_wrap=True)
            continue
        table.add_row(spec.name, info.tag, "built" if info.built_now else "cached",
                      f"{info.build_s:.0f}" if info.build_s is not None else "-", f"{info.size_mb:.0f}")
    out.print(table)
    out.print(f"total {time.monotonic() - started:.1f} s")
    if failures:
        raise BenchError(f"{failures} image(s) failed to build", hint=f"build logs in {log_dir}")
    return 0


def cmd_compose_prepare(args: argparse.Namespace) -> int:
    from bench.provision.compose import compose_file, next_steps, prepare
    from bench.provision.containers import require_daemon
    from bench.provision.images import base_image_default, offline_default

    require_daemon()
    started = time.monotonic()
    prepared = prepare(args.model, Path(args.env_file) if args.env_file else compose_file().parent / ".env",
                       args.base_image or base_image_default(), args.offline or offline_default(),
                       default_cpu_plan_or_override(args), args.memory, args.workers,
                       report=lambda name, text: console.print(f"  {name}: {escape(text)}"))
    table = Table("image", "result", "build s", "size MB", title=f"images ({time.monotonic() - started:.0f} s)")
    for info in prepared.images:
        table.add_row(info.tag, "built" if info.built_now else "cached",
                      f"{info.build_s:.0f}" if info.build_s is not None else "-", f"{info.size_mb:.0f}")
    out.print(table)
    out.print(next_steps(prepared), markup=False, highlight=False)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.provision.doctor import run_checks

    checks = run_checks()
    table = Table("check", "status", "detail", "fix", title="bench doctor")
    for check in checks:
        status = "[green]ok[/green]" if check.ok else "[red]missing[/red]" if check.required else "[yellow]no[/yellow]"
        table.add_row(check.name, status, escape(check.detail), "" if check.ok else escape(check.fix or ""))
    out.print(table)
    missing = [check for check in checks if not check.ok and check.required]
    if missing:
        raise BenchError(f"{len(missing)} required check(s) failed: {', '.join(c.name for c in missing)}",
                         hint=missing[0].fix)
    return 0


# ---- calibrate ----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _met(flag: bool) -> str:
    return "[green]met[/green]" if flag else "[red]missed[/red]"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench.measure.calibrate import calibrate

    cpus = default_cpu_plan_or_override(args)
    console.print(f"calibrating the load generator: server CPUs {list(cpus.server)}, generator CPUs "
                  f"{list(cpus.generator)}, {args.duration:.0f} s per measurement")
    report = calibrate(cpus, args.duration, lambda msg: console.print(f"  {escape(msg)}", style="dim"),
                       keep=Path(args.keep) if args.keep else None)
    ceiling, accuracy, stall = report["ceiling"], report["accuracy"], report["stall"]
    table = Table("measurement", "result", "compared with", "target", title="bench calibrate")
    table.add_row("1. ceiling, servebench recording (median of rounds)", f"{ceiling['servebench_rps']:,.0f} req/s",
                  f"plain FastHttpUser {ceiling['plain_locust_rps'] or 0:,.0f} req/s; wrk "
                  + (f"{ceiling['wrk_rps']:,.0f} req/s" if ceiling["wrk_rps"] else "not installed"),
                  f"overhead {_pct(ceiling['recording_overhead'])} (<= 10%) {_met(ceiling['target_met'])}")
    server_side = accuracy["server_side"]
    for loop in ("open", "closed"):
        truth, rtt = accuracy[f"{loop}_truth"], accuracy["round_trip_ms"][loop]
        table.add_row(f"2. fixed 5 ms server, {loop} loop",
                      f"p50 {accuracy[loop]['p50']:.3f} ms, p99 {accuracy[loop]['p99']:.3f} ms",
                      f"server-side p50 {server_side['p50']:.3f} + round trip {rtt:.3f} = {truth['p50']:.3f} ms;"
                      f" p99 {truth['p99']:.3f} ms",
                      f"p50 {_pct(accuracy[loop + '_p50_error'])} ({_pct(accuracy[loop + '_p50_error_vs_server_side'])}"
                      f" vs server-side alone), p99 {_pct(accuracy[loop + '_p99_error'])}")
    table.add_row("", "", "", f"p50 within 3% {_met(accuracy['target_met'])}")
    for loop in ("open", "closed"):
        table.add_row(f"3. 200 ms stall every 2 s, {loop} loop", f"p99 {stall[loop]['p99']:.1f} ms",
                      f"true p99 {stall['truth']['p99']:.1f} ms", f"{_pct(stall[loop + '_p99_error'])}"
                      + (f" (<= 10%) {_met(stall['target_met'])}" if loop == "open" else " (closed loop hides stalls)"))
    out.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"wrote {args.json}")
    return 0


def default_cpu_plan_or_override(args: argparse.Namespace) -> CpuPlan:
    """The default server/generator split, or the one given with --server-cpus/--generator-cpus."""
    from bench.targets.launch import default_cpu_plan, parse_cpu_list

    cpus = default_cpu_plan()
    try:
        cpus = CpuPlan(parse_cpu_list(args.server_cpus) if args.server_cpus else cpus.server,
                       parse_cpu_list(args.generator_cpus) if args.generator_cpus else cpus.generator)
    except ValueError:
        raise BenchError("bad CPU list", hint="use forms like 1 or 0,2 or 2-3") from None
    usable = os.sched_getaffinity(0)
    if not set(cpus.server + cpus.generator) <= usable:
        raise BenchError(f"CPUs {sorted(set(cpus.server + cpus.generator) - usable)} are not available",
                         hint=f"usable CPUs: {sorted(usable)}")
    return cpus


# ---- parser -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors print one line plus a hint (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (hint: {self.prog} --help)\n")


def _docker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-image", help="image to build runtime images on (default $SERVEBENCH_BASE_IMAGE "
                        "or python:3.11-slim)")
    parser.add_argument("--offline", action="store_true", help="build images from a host wheelhouse, with no "
                        "package index inside docker build (default when $SERVEBENCH_DOCKER_OFFLINE=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark ML model serving runtimes.")
    parser.add_argument("--version", action="version", version=f"servebench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    models = commands.add_parser("models", help="train, log and register the reference models")
    models_commands = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    build = models_commands.add_parser("build", help="train, log and register (idempotent)")
    build.add_argument("--model", default="all", help="model name, comma list or all")
    build.set_defaults(handler=cmd_models_build)
    models_commands.add_parser("list", help="registered models and local copies").set_defaults(
        handler=cmd_models_list)

    envs = commands.add_parser("envs", help="per-runtime environments")
    envs_commands = envs.add_subparsers(dest="envs_command", required=True, parser_class=_Parser)
    envs_build = envs_commands.add_parser("build", help="build environments (cached by requirements hash)")
    envs_build.add_argument("--runtime", default="all", help="runtime name, folder, comma list or all")
    envs_build.add_argument("--force", action="store_true", help="rebuild even when cached")
    envs_build.add_argument("--parallel", type=int, default=4, help="environments built at once")
    envs_build.set_defaults(handler=cmd_envs_build)

    serve = commands.add_parser("serve", help="one runtime in the foreground; Ctrl-C stops it")
    serve.add_argument("--runtime", required=True)
    serve.add_argument("--model", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    serve.set_defaults(handler=cmd_serve)

    check = commands.add_parser("check", help="parity of every runtime with every model")
    check.add_argument("--runtime", default="all")
    check.add_argument("--model", default="all")
    check.add_argument("--json", metavar="FILE", help="write the table as a JSON list")
    check.set_defaults(handler=cmd_check)

    run = commands.add_parser("run", help="load-test runtimes and write reports/<run-id>/")
    run.add_argument("--runtime", default="all", help="runtime name, folder, comma list or all")
    run.add_argument("--model", default="iris-logreg", help="model name, comma list or all")
    run.add_argument("--scenario", default="smoke", help="scenario name or YAML path")
    run.add_argument("--profile", default="quick", help="smoke, quick or full (scales durations)")
    run.add_argument("--target", default="local", choices=["local", "docker", "kserve"])
    run.add_argument("--out", metavar="DIR", help="run folder (default reports/<run-id>)")
    run.add_argument("--server-cpus", help="CPUs for the server (default: the last one)")
    run.add_argument("--generator-cpus", help="CPUs for the load generator (default: the others)")
    run.add_argument("--generator-processes", type=int, help="override the scenario's generator processes")
    run.add_argument("--seed", type=int, help="override the scenario's arrival seed: another Poisson draw (compares "
                     "only with runs of the same seed)")
    run.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    _docker_options(run)
    run.add_argument("--memory", default="4g", help="docker and kserve targets: memory limit per server")
    run.add_argument("--dry-run", action="store_true", help="kserve target: write every manifest to --out "
                     "DIR/manifests and print every command, applying nothing")
    run.set_defaults(handler=cmd_run)

    report = commands.add_parser("report", help="(re)render report.html and summary.md from saved runs")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run, or several to overlay")
    report.add_argument("--out", metavar="DIR", help="where to write (default: the (first) run folder)")
    report.set_defaults(handler=cmd_report)

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

    baseline = commands.add_parser("baseline", help="compact baselines to commit and compare against")
    baseline_commands = baseline.add_subparsers(dest="baseline_command", required=True, parser_class=_Parser)
    baseline_save = baseline_commands.add_parser("save", help="write a run's baseline: fingerprints, figures, "
                                                 "a seeded sample of latencies")
    baseline_save.add_argument("run_dir", metavar="RUN_DIR")
    baseline_save.add_argument("file", metavar="FILE")
    baseline_save.set_defaults(handler=cmd_baseline_save)

    images = commands.add_parser("images", help="per-runtime Docker images")
    images_commands = images.add_subparsers(dest="images_command", required=True, parser_class=_Parser)
    images_build = images_commands.add_parser("build", help="build (or reuse) one image per runtime")
    images_build.add_argument("--runtime", default="all", help="runtime name, folder, comma list or all")
    images_build.add_argument("--parallel", type=int, default=2, help="images built at once")
    _docker_options(images_build)
    images_build.set_defaults(handler=cmd_images_build)

    cluster = commands.add_parser("cluster", help="the kind + KServe cluster of --target kserve")
    cluster.add_argument("cluster_command", choices=["up", "down"], help="up: create or complete it (idempotent); "
                         "down: delete it")
    cluster.add_argument("--dry-run", action="store_true", help="print every command instead of running it")
    cluster.set_defaults(handler=cmd_cluster)

    compose = commands.add_parser("compose", help="docker-compose.yml: images and its .env file")
    compose_commands = compose.add_subparsers(dest="compose_command", required=True, parser_class=_Parser)
    compose_prepare = compose_commands.add_parser("prepare", help="build (or reuse) the images, link the models "
                                                  "and write the env file `docker-compose up` reads")
    compose_prepare.add_argument("--model", default="iris-logreg", help="the model the runtimes serve "
                                 "(SERVEBENCH_MODEL; models with a local copy can be switched to later)")
    compose_prepare.add_argument("--env-file", metavar="FILE", help="default: .env beside docker-compose.yml")
    compose_prepare.add_argument("--server-cpus", help="cpuset of every runtime (default: the last CPU)")
    compose_prepare.add_argument("--generator-cpus", help="cpuset of Locust and MLflow (default: the others)")
    compose_prepare.add_argument("--memory", default="4g", help="memory limit of every runtime")
    compose_prepare.add_argument("--workers", type=int, help="Locust workers (default: one per generator CPU)")
    _docker_options(compose_prepare)
    compose_prepare.set_defaults(handler=cmd_compose_prepare)

    doctor = commands.add_parser("doctor", help="what is installed and reachable, with fixes")
    doctor.set_defaults(handler=cmd_doctor)

    calibrate = commands.add_parser("calibrate", help="measure the load generator against known servers")
    calibrate.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    calibrate.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    calibrate.add_argument("--keep", metavar="DIR", help="keep raw samples and server records here")
    calibrate.add_argument("--server-cpus", help="CPUs for the calibration servers (default: the last one)")
    calibrate.add_argument("--generator-cpus", help="CPUs for the load generator (default: the others)")
    calibrate.set_defaults(handler=cmd_calibrate)
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    signal.signal(signal.SIGTERM, _terminate)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BenchError as exc:
        text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        console.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        from bench.targets.local import stop_all

        stop_all()
        console.print("interrupted: every server stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
