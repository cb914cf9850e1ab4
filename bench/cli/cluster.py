"""`bench cluster up|down`: the kind + KServe cluster `--target kserve` deploys to."""

from __future__ import annotations

import argparse

from bench.cli.options import Commands


def add_parser(commands: Commands) -> None:
    cluster = commands.add_parser("cluster", help="the kind + KServe cluster of --target kserve")
    cluster.add_argument("cluster_command", choices=["up", "down"], help="up: create or complete it (idempotent); "
                         "down: delete it")
    cluster.add_argument("--dry-run", action="store_true", help="print every command instead of running it")
    cluster.set_defaults(handler=cmd_cluster)


def cmd_cluster(args: argparse.Namespace) -> int:
    """With --dry-run the steps become shell comments among the printed commands."""
    from bench.cli.console import command, step
    from bench.config import state_dir
    from bench.events import EventHook, Message, say_to
    from bench.targets.kserve.cluster import cluster_down, cluster_up
    from bench.targets.kserve.runner import Runner

    runner = Runner(dry_run=args.dry_run, echo=say_to(EventHook[Message](command)))
    say = runner.note if args.dry_run else say_to(EventHook[Message](step))
    if args.cluster_command == "up":
        cluster_up(runner, state_dir() / "kind", say)
    else:
        cluster_down(runner, say)
    return 0
