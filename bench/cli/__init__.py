"""The `bench` command: parse arguments, run one command, map what escapes it to an exit code.

Exit codes: 0 success, 1 a verdict failed (parity mismatch, regression), 2 usage or environment error
(one `error: ... (hint: ...)` line), 130 interrupted. Each command lives in its own module, registers its
own sub-parser and is a thin wrapper over a library function; bench.cli.console renders.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from types import FrameType

from bench import __version__
from bench.cli import (
    calibrate,
    capacity,
    check,
    cluster,
    compare,
    compose,
    doctor,
    envs,
    images,
    models,
    report,
    run,
    serve,
    tune,
    worker,
)
from bench.cli.options import Handler, Parser
from bench.errors import BenchError
from bench.targets.orphans import mark_as_owner

__all__ = ["build_parser", "main"]

COMMANDS = (models, envs, serve, check, run, capacity, tune, report, compare, images, cluster, compose, doctor,
            calibrate, worker)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bench", description="Benchmark ML model serving runtimes.")
    parser.add_argument("--version", action="version", version=f"servebench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _quiet_libraries() -> None:
    """MLflow and alembic log at INFO on every store access; keep the terminal for our own output."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # known noise: pickle format, torch +cpu
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow prints each run's URL, tracking URI credentials and all; the harness prints its own, masked
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*pickle or cloudpickle format.*")
    warnings.filterwarnings("ignore", module="mlflow.*")


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """Ctrl-C, SIGTERM (a CI runner's cancel) and SIGHUP (a dropped SSH session) alike: the first stops the
    run cleanly (finished cells and the partial one are kept, everything started is stopped, quickly); a
    second one, while that is going on, kills what is still running at once and exits."""
    from bench.targets.owned import OWNED

    if OWNED.interrupted:
        OWNED.kill_all()
        os._exit(130)
    OWNED.interrupted = True
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    mark_as_owner()  # everything started from here on carries this harness's mark: a later run reaps it if we die
    for signum in INTERRUPT_SIGNALS:
        signal.signal(signum, _interrupt)
    handler: Handler = args.handler
    try:
        return handler(args)
    except BenchError as exc:
        from bench.cli.console import print_error

        print_error(exc)
        return 2
    except KeyboardInterrupt:
        from bench.cli.console import console
        from bench.targets.owned import stop_all_owned

        stopped = stop_all_owned()
        console.print(f"interrupted: stopped {stopped} server(s), container(s) and port-forward(s) this run had "
                      "started" if stopped else "interrupted: nothing was left running")
        return 130


def entry() -> None:
    """The `bench` command. After an interrupt, exit without the interpreter's finalisation: with torch,
    MLflow and pandas loaded it took 2.2 s (measured with py-spy: no Python frame, the GIL held), which a
    user who pressed Ctrl-C spends waiting. Everything was saved and every child stopped before this."""
    code = main()
    if code == 130:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
