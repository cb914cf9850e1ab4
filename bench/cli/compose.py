"""`bench compose prepare`: the images, model links and .env file `docker-compose up` needs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.cli.options import Commands, add_cpu_options, add_models, cpus, image_command, one_model, ready_images


def add_parser(commands: Commands) -> None:
    prepare = image_command(commands, ("compose", "docker-compose.yml: images and its .env file"), "prepare",
                            help="build (or reuse) the images, link the models and write the env file "
                            "`docker-compose up` reads")
    add_models(prepare, default="iris-logreg")  # SERVEBENCH_MODEL: what every runtime service serves
    prepare.add_argument("--env-file", metavar="FILE", help="default: .env beside docker-compose.yml")
    add_cpu_options(prepare, server="cpuset of every runtime (default: the last CPU)",
                    generator="cpuset of Locust and MLflow (default: the others)")
    prepare.add_argument("--memory", default="4g", help="memory limit of every runtime")
    prepare.add_argument("--workers", type=int, help="Locust workers (default: one per generator CPU)")
    prepare.set_defaults(handler=cmd_compose_prepare)


def cmd_compose_prepare(args: argparse.Namespace) -> int:
    from bench.cli.console import images_table, out, status
    from bench.events import EventHook, Status, report_to
    from bench.targets.compose import compose_file, next_steps, prepare

    base_image, offline = ready_images(args)
    started = time.monotonic()
    env_file = Path(args.env_file) if args.env_file else compose_file().parent / ".env"
    prepared = prepare(one_model(args, "bench compose prepare"), env_file, base_image, offline, cpus(args),
                       args.memory, args.workers, report=report_to(EventHook[Status](status)))
    out.print(images_table(prepared.images, started))
    out.print(next_steps(prepared), markup=False, highlight=False)
    return 0
