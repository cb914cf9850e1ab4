"""Everything the `bench` commands show: the two consoles, event listeners, tables and the run display.

Progress, warnings and errors go to stderr (`console`); tables and what a script may parse go to stdout
(`out`). Renderers only format what they are given: the commands call the library. Text from users
(runtime names, error messages) is escaped, never read as rich markup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from bench.errors import BenchError
from bench.events import Completed, Message, Status
from bench.measure.calibrate import (
    OPEN_LOOP_CEILING_TARGET_RPS,
    OPEN_P99_ERROR_TARGET,
    P50_ERROR_TARGET,
    RECORDING_OVERHEAD_TARGET,
)
from bench.measure.generator_ceiling import LATENESS_P99_LIMIT_MS
from bench.measure.run import CellStarted, LoadTick, RunEvent

if TYPE_CHECKING:
    from bench.load.driver import LiveTick
    from bench.measure.calibrate import CalibrationReport
    from bench.measure.check import CheckRow
    from bench.models.registry import LocalModel
    from bench.provision.doctor import Check
    from bench.provision.envs import RuntimeEnv
    from bench.provision.images import ImageInfo
    from bench.report.publish import Published
    from bench.results.schema import Cell, RunResults

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# ---- formatting ---------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{_number(value, digits)} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _met(flag: bool) -> str:
    return "[green]met[/green]" if flag else "[red]missed[/red]"


def _coloured(status: str) -> str:
    """A parity status in its colour: ok green, mismatch yellow, anything else (failed) red."""
    colour = {"ok": "green", "mismatch": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/{colour}]"


def elapsed(started: float) -> str:
    return f"total {time.monotonic() - started:.1f} s"


def report_paths(report: Path, summary: Path) -> str:
    return f"report: {report}\nsummary: {summary}"


def print_error(exc: BenchError) -> None:
    """The one line every usage or environment error ends with."""
    text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    console.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)


def print_warning(text: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(text)}", soft_wrap=True)


# ---- event listeners ----------------------------------------------------------------------------


def progress(event: Message) -> None:
    """A step of long work, dimmed under the command's own lines."""
    console.print(f"  {escape(event.text)}", style="dim", soft_wrap=True)


def step(event: Message) -> None:
    """A step the user waits for (training a model, creating a cluster)."""
    console.print(f"  {escape(event.text)}", soft_wrap=True)


def command(event: Message) -> None:
    """A command run or to be run, verbatim on stdout so it can be copied or piped into a shell."""
    out.print(event.text, markup=False, highlight=False, soft_wrap=True)


def status(event: Status) -> None:
    console.print(f"  {escape(event.subject)}: {escape(event.text)}", soft_wrap=True)


def check_row(event: Completed[CheckRow]) -> None:
    row = event.item
    diff = "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.2g}"
    console.print(f"[{event.done}/{event.total}] {escape(row.runtime)} x {row.model}: {_coloured(row.status)} "
                  f"max|diff| {diff}" + (f" ({escape(row.error)})" if row.error else ""), soft_wrap=True)


class StatusBoard:
    """A live table of every item's latest Status while they are built at once; a listener."""

    def __init__(self, names: Iterable[str], title: str) -> None:
        self.status = dict.fromkeys(names, "waiting")
        self.title = title
        self.started = time.monotonic()
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=not console.is_terminal)

    def _render(self) -> Table:
        table = Table("runtime", "status", title=f"{self.title} ({time.monotonic() - self.started:.0f} s)")
        for name, text in self.status.items():
            table.add_row(escape(name), escape(text))
        return table

    def __call__(self, event: Status) -> None:
        self.status[event.subject] = event.text
        self.live.update(self._render())

    def __enter__(self) -> StatusBoard:
        self.live.start(refresh=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.live.stop()


# ---- tables -------------------------------------------------------------------------------------


def models_table(built: Sequence[tuple[LocalModel, str]]) -> Table:
    """Each model with what was done to it ("trained (12.3 s)")."""
    table = Table("model", "action", "version", "local copy", title="reference models")
    for local, action in built:
        table.add_row(local.spec.name, action, local.version, str(local.model_dir))
    return table


def registered_table(rows: Sequence[dict[str, str]], tracking_uri: str) -> Table:
    table = Table(*rows[0].keys(), title=f"models in {tracking_uri}")
    for row in rows:
        table.add_row(*row.values())
    return table


def envs_table(names: Sequence[str], results: dict[str, tuple[RuntimeEnv | None, bool, str | None]]) -> Table:
    """In the order asked for (results arrive in the order builds finished)."""
    table = Table("runtime", "result", "build s", "size MB", "packages", "path")
    for name in names:
        env, built, error = results[name]
        if env is None:
            table.add_row(escape(name), "[red]failed[/red]", "-", "-", "-", escape(error or ""))
            continue
        table.add_row(escape(name), "built" if built else "cached", f"{env.build_s:.0f}" if built else "-",
                      f"{env.size_mb:.0f}", str(len(env.packages)), str(env.path))
    return table


def _image_cells(info: ImageInfo) -> tuple[str, str, str]:
    return ("built" if info.built_now else "cached", "-" if info.build_s is None else f"{info.build_s:.0f}",
            f"{info.size_mb:.0f}")


def image_results_table(results: dict[str, ImageInfo | BenchError], base_image: str, offline: bool) -> Table:
    table = Table("runtime", "image", "result", "build s", "size MB",
                  title=f"images on {base_image}" + (" (offline build)" if offline else ""))
    for name, info in results.items():
        if isinstance(info, BenchError):
            table.add_row(escape(name), "-", "[red]failed[/red]", "-", "-")
        else:
            table.add_row(escape(name), info.tag, *_image_cells(info))
    return table


def print_image_failures(results: dict[str, ImageInfo | BenchError]) -> None:
    for name, info in results.items():
        if isinstance(info, BenchError):
            console.print(f"[red]{escape(name)}:[/red] {escape(str(info))}", soft_wrap=True)


def images_table(images: Sequence[ImageInfo], started: float) -> Table:
    table = Table("image", "result", "build s", "size MB", title=f"images ({time.monotonic() - started:.0f} s)")
    for info in images:
        table.add_row(info.tag, *_image_cells(info))
    return table


def check_table(rows: Sequence[CheckRow]) -> Table:
    table = Table("runtime", "model", "status", "max abs diff", "startup s", "RSS MB", "error", title="parity")
    for row in rows:
        table.add_row(escape(row.runtime), row.model, _coloured(row.status),
                      "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.3g}", _number(row.startup_s),
                      _number(row.rss_mb, 0), escape((row.error or "")[:80]))
    return table


def doctor_table(checks: Sequence[Check]) -> Table:
    table = Table("check", "status", "detail", "fix", title="bench doctor")
    for check in checks:
        state = "[green]ok[/green]" if check.ok else "[red]missing[/red]" if check.required else "[yellow]no[/yellow]"
        table.add_row(check.name, state, escape(check.detail), "" if check.ok else escape(check.fix or ""))
    return table


def _times(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def calibration_table(report: CalibrationReport) -> Table:
    ceiling, accuracy, stall = report.ceiling, report.accuracy, report.stall
    table = Table("measurement", "result", "compared with", "target", title="bench calibrate")
    table.add_row("1. ceiling, servebench recording (median of rounds)", f"{ceiling.servebench_rps:,.0f} req/s",
                  f"plain FastHttpUser {ceiling.plain_locust_rps or 0:,.0f} req/s; wrk "
                  + (f"{ceiling.wrk_rps:,.0f} req/s" if ceiling.wrk_rps else "not installed"),
                  f"{_times(ceiling.servebench_rps, ceiling.plain_locust_rps)} plain FastHttpUser "
                  f"(>= {1 - RECORDING_OVERHEAD_TARGET:.2f}x) {_met(ceiling.target_met)}")
    if report.open_loop is not None:
        open_loop = report.open_loop
        reached = f"{open_loop.rps:,.0f} req/s" if open_loop.rps else "below the first step"
        failed = (f"first failed {open_loop.first_failed_rps:,.0f} req/s" if open_loop.first_failed_rps
                  else "never failed")
        kept = [step for step in open_loop.steps if step.kept_up]
        late = max(kept, key=lambda step: step.rate).lateness_p99_ms if kept else None
        table.add_row("1b. open-loop ceiling, one process (Poisson)",
                      reached + (f", lateness p99 {late:.3f} ms there" if late is not None else ""),
                      f"{failed} ({len(open_loop.steps)} steps: sends on schedule, lateness p99 <= "
                      f"{LATENESS_P99_LIMIT_MS:g} ms)",
                      f">= {OPEN_LOOP_CEILING_TARGET_RPS:,.0f} req/s "
                      f"{_met((open_loop.rps or 0) >= OPEN_LOOP_CEILING_TARGET_RPS)}")
    for loop, result in accuracy.loops():
        truth = result.truth
        table.add_row(f"2. fixed 5 ms server, {loop} loop", f"p50 {_ms(result.p50, 3)}, p99 {_ms(result.p99, 3)}",
                      f"server-side p50 {_number(accuracy.server_side.p50, 3)} + round trip "
                      f"{_number(result.round_trip_ms, 3)} = {_ms(truth.p50, 3)}; p99 {_ms(truth.p99, 3)}",
                      f"p50 {_pct(result.p50_error)} ({_pct(result.p50_error_vs_server_side)} vs server-side alone), "
                      f"p99 {_pct(result.p99_error)}")
    table.add_row("", "", "", f"p50 within {P50_ERROR_TARGET:.0%} {_met(accuracy.target_met)}")
    for loop, measured in stall.loops():
        target = f" (<= {OPEN_P99_ERROR_TARGET:.0%}) {_met(stall.target_met)}" if loop == "open" \
            else " (closed loop hides stalls)"
        table.add_row(f"3. 200 ms stall every 2 s, {loop} loop", f"p99 {_ms(measured.p99, 1)}",
                      f"true p99 {_ms(stall.truth.p99, 1)}", _pct(measured.p99_error) + target)
    return table


# ---- bench run: the only renderers that read results; the schema's attributes are used here alone --


def results_table(results: RunResults) -> Group:
    """The results table, then each sweep's highest load within the SLO."""
    scenario = results.scenario.name if results.scenario else "?"
    table = Table("runtime", "model", "load", "batch", "requests", "req/s", "p50 ms", "p99 ms", "p99.9 ms",
                  "late p99 ms", "errors", "valid", title=f"run {results.run_id} ({scenario})")
    for cell in results.cells:
        table.add_row(cell.runtime, cell.model, escape(cell.label), str(cell.batch_size), str(cell.counts.requests),
                      f"{cell.rates.throughput_rps:.1f}", _number(cell.latency.p50), _number(cell.latency.p99),
                      _number(cell.latency.p999), _number(cell.lateness.p99, 3), str(cell.counts.errors),
                      "[green]yes[/green]" if cell.validity.valid else "[yellow]no[/yellow]")
    for pair in results.unsupported:
        table.add_row(pair.runtime, pair.model, f"[dim]unsupported: {escape(pair.reason)}[/dim]", *[""] * 8, "-")
    sweeps = [f"sweep {sweep.runtime} x {sweep.model} (batch {sweep.batch_size}): highest load within the SLO: "
              f"{sweep.max_load_within_slo or 'none'}" for sweep in results.sweeps]
    return Group(table, *sweeps)


def _numbered(index: int, total: int) -> str:
    return f"{index}/{total}" if total else str(index)


def cell_line(index: int, total: int, cell: Cell) -> tuple[str, str]:
    """One finished cell: the plain line for run.log and the coloured line for the terminal."""
    figures = (f"{cell.rates.throughput_rps:.1f} req/s, p50 {_ms(cell.latency.p50)}, p99 {_ms(cell.latency.p99)}, "
               f"errors {cell.counts.errors}")
    reasons = cell.reasons
    verdict = "[green]valid[/green]" if cell.validity.valid else \
        f"[yellow]invalid[/yellow] ({escape('; '.join(reasons))})"
    logged = f"cell {_numbered(index, total)} {cell.runtime} x {cell.model} {cell.label}: {figures}; " \
             f"valid={cell.validity.valid} {reasons}"
    return logged, (f"[{_numbered(index, total)}] {cell.runtime} x {cell.model} {escape(cell.label)}: {figures} "
                    f"{verdict}")


class ConsoleRunUI:
    """Listens to a run: progress on the terminal (one live status line), every message also in run.log."""

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_path.open("a")
        self.started = time.monotonic()
        self.live = Live("", console=console, refresh_per_second=4, transient=True)

    def _log(self, message: str) -> None:
        self.log.write(f"{datetime.now():%H:%M:%S} {message}\n")
        self.log.flush()

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, Message):
            self.say(event.text)
        elif isinstance(event, CellStarted):
            self.cell_started(event.index, event.total, event.title)
        elif isinstance(event, LoadTick):
            self.tick(event.title, event.tick)
        else:
            self.cell_finished(event.done, event.total, event.item)

    def say(self, message: str) -> None:
        self._log(message)
        progress(Message(message))

    def cell_started(self, index: int, total: int, title: str) -> None:
        self._log(f"cell {_numbered(index, total)} {title}: load starting")
        self.live.start()
        self.live.update(f"cell {_numbered(index, total)} {escape(title)}: starting load")

    def tick(self, title: str, tick: LiveTick) -> None:
        p99 = "-" if tick.p99_ms is None else f"{tick.p99_ms:.1f} ms"
        phase = "starting" if tick.elapsed_s < 0 else f"{tick.elapsed_s:5.0f} s"
        self.live.update(f"{escape(title)}: {phase}  {tick.requests_per_s:7.0f} req/s  p99 {p99}  errors "
                         f"{tick.errors}  (run elapsed {time.monotonic() - self.started:.0f} s)")

    def cell_finished(self, index: int, total: int, cell: Cell) -> None:
        self.live.stop()
        logged, shown = cell_line(index, total, cell)
        self._log(logged)
        console.print(shown, soft_wrap=True)

    def close(self) -> None:
        self.live.stop()
        self.log.close()


def print_published(published: Published) -> None:
    """Where the report went and what could not be done; results are safe either way."""
    if published.report is not None and published.summary is not None:
        console.print(report_paths(published.report, published.summary))
    for warning in published.warnings:
        print_warning(warning)
    if published.mlflow_run_id is not None:
        console.print(f"MLflow run: {published.mlflow_run_id}")
