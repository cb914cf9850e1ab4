"""`bench serve`: one runtime with one model in the foreground, its log streamed; Ctrl-C stops it."""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.cli.options import Commands, add_models, log_dir, one_model
from bench.errors import BenchError, DeployError


def add_parser(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="one runtime in the foreground; Ctrl-C stops it")
    serve.add_argument("--runtime", required=True)
    add_models(serve, default="iris-logreg")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from bench.cli.console import console, step
    from bench.config import load_runtime
    from bench.events import EventHook, Message, say_to
    from bench.models.registry import resolve
    from bench.provision.support import served, why_unsupported
    from bench.targets.launch import default_cpu_plan
    from bench.targets.local import LocalTarget
    from bench.targets.orphans import reap_orphan_processes

    runtime = load_runtime(args.runtime)
    resolved = resolve(one_model(args, "bench serve"), say_to(EventHook[Message](step)))
    reason = why_unsupported(runtime, resolved, environments=True)  # bench serve runs it locally
    if reason is not None:
        raise BenchError(f"{runtime.name} cannot serve {resolved.name}: unsupported: {reason}",
                         hint="choose another runtime")
    model = served(runtime, resolved)
    target = LocalTarget(cpus=default_cpu_plan(), host=args.host, port=args.port)
    for removed in reap_orphan_processes():  # what a dead harness left running
        console.print(f"removed {removed}")
    logs = log_dir("serve")
    console.print(f"starting {runtime.name} with {model.name} (version {model.version})...")
    try:
        deployment = target.deploy(runtime, model, logs)
    except DeployError as exc:
        console.print(exc.log_tail, markup=False)
        hint = f"{exc.hint}; full log in {logs}" if exc.hint else f"full log in {logs}"
        raise BenchError(exc.message, hint=hint) from None
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
