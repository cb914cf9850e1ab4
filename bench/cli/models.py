"""`bench models build|list`: the reference models in MLflow and their local copies."""

from __future__ import annotations

import argparse
import time

from bench.cli.options import MODELS_HELP, Commands, command_group, reference_models
from bench.redact import redact_uri


def add_parser(commands: Commands) -> None:
    group = command_group(commands, "models", "train, log and register the reference models")
    build = group.add_parser("build", help="train, log and register (idempotent)")
    build.add_argument("--model", default="all", help=MODELS_HELP.split(";")[0])
    build.set_defaults(handler=cmd_models_build)
    group.add_parser("list", help="registered models and local copies").set_defaults(handler=cmd_models_list)


def cmd_models_build(args: argparse.Namespace) -> int:
    from bench.cli.console import console, models_table, out, step
    from bench.events import EventHook, Message, say_to
    from bench.models.registry import ensure_model, tracking_uri

    specs = reference_models(args.model)
    console.print(f"MLflow tracking store: {redact_uri(tracking_uri())}")
    say = say_to(EventHook[Message](step))
    built = []
    for spec in specs:
        started = time.monotonic()
        local, action = ensure_model(spec, say)
        built.append((local, f"{action} ({time.monotonic() - started:.1f} s)"))
    out.print(models_table(built))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from bench.cli.console import out, registered_table
    from bench.models.registry import list_registered, tracking_uri

    out.print(registered_table(list_registered(), redact_uri(tracking_uri())))
    return 0
