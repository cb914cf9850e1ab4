"""What several commands share: the one-line-error parser, common arguments, and turning them into
library values. Every check here runs before anything is built or started, so a usage error costs
nothing. Library modules are imported inside the functions: building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.config import ModelSpec, RuntimeSpec
    from bench.processes import GeneratorPriority
    from bench.targets.factory import TargetOptions
    from bench.targets.launch import CpuPlan
    from bench.targets.url import UrlOptions

Handler = Callable[[argparse.Namespace], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns

RUNTIMES_HELP = "runtime name, folder, comma list or all"
DEFAULT_MODEL = "iris-logreg"  # what a measuring command serves when --model is not given
PRIORITY_ENV = "SERVEBENCH_GENERATOR_PRIORITY"  # "normal": leave the load generator in the default class
MODELS_HELP = ("a reference model's name, a comma list or all; or a team's MLflow model: models:/NAME/VERSION, "
               "models:/NAME@ALIAS, runs:/RUN_ID/PATH or a model folder")


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors print one line plus a hint (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (hint: {self.prog} --help)\n")


class OldSpelling(argparse.Action):
    """A renamed option's old spelling, kept for one release: it sets what the new spelling sets, hidden from
    --help, and says on stderr (one line) what to type instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, flag: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0 if flag else None, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS, **kwargs)
        self.new, self.flag = new, flag

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"warning: {option_string} is now {self.new}; the old spelling goes in a later release",
              file=sys.stderr)
        setattr(namespace, self.dest, True if self.flag else values)


def add_old_spelling(parser: argparse.ArgumentParser, old: str, new: str, dest: str, *, flag: bool = False,
                     type: Callable[[str], Any] = str) -> None:
    """Accept `old` as `new` (whose value lands in dest) for a release."""
    parser.add_argument(old, dest=dest, action=OldSpelling, new=new, flag=flag, type=type)


def command_group(commands: Commands, name: str, help: str) -> Commands:
    """A command with sub-commands of its own (`bench models build`)."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, parser_class=Parser)


def image_command(commands: Commands, group: tuple[str, str], name: str, help: str) -> argparse.ArgumentParser:
    """A group's sub-command that builds (or reuses) runtime images (`bench images build`, `bench compose
    prepare`): it takes the Docker image options, read back by ready_images."""
    parser = command_group(commands, *group).add_parser(name, help=help)
    add_docker_options(parser)
    return parser


# ---- arguments ----------------------------------------------------------------------------------


def add_runtimes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", default="all", help=RUNTIMES_HELP)


def add_models(parser: argparse.ArgumentParser, default: str | None = "all") -> None:
    parser.add_argument("--model", default=default, help=MODELS_HELP + (f" (default {DEFAULT_MODEL})"
                                                                        if default is None else ""))
    parser.add_argument("--data", type=Path, metavar="FILE", help="a team's model: request rows (.parquet, .csv, "
                        ".jsonl or .npy) checked against its signature (default: its input example); with "
                        "--target url and no --model, a .jsonl of whole request bodies, sent as they are")
    parser.add_argument("--tracking-uri", metavar="URI", help="the MLflow tracking server holding models:/ and "
                        "runs:/ URIs (default: MLFLOW_TRACKING_URI, else servebench's own store)")


def add_cpu_options(parser: argparse.ArgumentParser, server: str = "CPUs for the server (default: the last one)",
                    generator: str = "CPUs for the load generator (default: the others)") -> None:
    parser.add_argument("--server-cpus", help=server)
    parser.add_argument("--generator-cpus", help=generator)


def add_docker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-image", help="image to build runtime images on (default $SERVEBENCH_BASE_IMAGE "
                        "or python:3.11-slim)")
    parser.add_argument("--offline", action="store_true", help="build images from a host wheelhouse, with no "
                        "package index inside docker build (default when $SERVEBENCH_DOCKER_OFFLINE=1)")


# ---- values -------------------------------------------------------------------------------------


def runtimes(value: str) -> list[RuntimeSpec]:
    from bench.config import load_runtimes

    return load_runtimes(value)


def reference_models(value: str) -> list[ModelSpec]:
    """--model's names, each checked against the catalog of reference models."""
    from bench.config import split_names
    from bench.models.catalog import get_spec, model_names

    return [get_spec(name) for name in split_names(value, model_names(), "model")]


def models(args: argparse.Namespace, seed: int = 0) -> list[ModelSpec]:
    """--model's reference names and team models (resolved, copied and prepared now, with --data and
    --tracking-uri), so that a bad URI, store or data file fails before anything is provisioned."""
    from bench.cli.console import step
    from bench.config import split_names
    from bench.events import EventHook, Message, say_to
    from bench.models.catalog import SPECS, get_spec, model_names
    from bench.models.team import open_model
    from bench.models.team_source import is_model_uri, suggest_uri

    data: Path | None = getattr(args, "data", None)
    tracking: str | None = getattr(args, "tracking_uri", None)
    if args.model is None and data is not None and getattr(args, "target", None) == "url" \
            and data.suffix.lower() == ".jsonl":  # whole request bodies, for a protocol the harness need not speak
        from bench.models.request_bodies import open_bodies

        return [open_bodies(data, getattr(args, "name", None))]
    value = str(args.model or DEFAULT_MODEL)
    names = [value] if is_model_uri(value) else split_names(value, model_names(), "model")
    chosen: list[ModelSpec] = []
    for name in names:
        if name in SPECS:
            chosen.append(get_spec(name))
        elif is_model_uri(name):
            chosen.append(open_model(name, data, tracking, seed, say_to(EventHook[Message](step))))
        else:
            raise suggest_uri(name, tracking)
    teams = [spec for spec in chosen if not spec.is_reference]
    if data is not None and not teams:
        raise BenchError("--data gives a team's model its rows: the reference models bring their own",
                         hint="add --model models:/NAME/VERSION (or runs:/..., a model folder), or drop --data")
    seen = [spec.name for spec in chosen]
    twice = next((name for name in seen if seen.count(name) > 1), None)
    if twice is not None:
        raise BenchError(f"two models named {twice} in one command", hint="measure one version per run, then "
                         "compare the runs (bench compare)")
    return chosen


def one_model(args: argparse.Namespace, command: str) -> ModelSpec:
    """--model for a command that serves a single model (bench serve, bench compose prepare)."""
    chosen = models(args)
    if len(chosen) != 1:
        raise BenchError(f"{command} serves one model at a time", hint="give --model one name or URI")
    return chosen[0]


def cpus(args: argparse.Namespace) -> CpuPlan:
    from bench.targets.launch import cpu_plan

    return cpu_plan(args.server_cpus, args.generator_cpus, generator_priority())


def generator_priority() -> GeneratorPriority:
    """$SERVEBENCH_GENERATOR_PRIORITY, read here and passed down: "normal" keeps the load generator in the
    default scheduling class; unset or "real-time", SCHED_FIFO where permitted. A misspelling is a usage error,
    not a silent real-time."""
    value = os.environ.get(PRIORITY_ENV, "").strip() or "real-time"
    if value == "normal":
        return "normal"
    if value != "real-time":
        raise BenchError(f"{PRIORITY_ENV}={value}: the generator's scheduling class is real-time or normal",
                         hint=f"unset {PRIORITY_ENV}, or set it to normal")
    return "real-time"


def image_settings(args: argparse.Namespace) -> tuple[str, bool]:
    """--base-image and --offline, or their defaults from the environment."""
    from bench.provision.images import base_image_default, offline_default

    return args.base_image or base_image_default(), args.offline or offline_default()


def ready_images(args: argparse.Namespace) -> tuple[str, bool]:
    """An image_command's settings, once the Docker daemon answers: it is asked before any image is built,
    so a stopped daemon is one line with a hint, not a failed build."""
    from bench.provision.containers import require_daemon

    require_daemon()
    return image_settings(args)


def add_url_options(parser: argparse.ArgumentParser) -> None:
    """The url target's endpoint: what to measure when servebench did not start the server."""
    group = parser.add_argument_group("--target url (an endpoint already running)")
    group.add_argument("--url", help="the predict URL, e.g. http://127.0.0.1:8080/v2/models/iris-logreg/infer")
    group.add_argument("--protocol", help="the wire protocol it speaks; with other targets, the protocols to "
                       "measure each runtime over, comma-separated (v2,v2-grpc: MLServer over REST and gRPC)")
    group.add_argument("--name", help="what to call it in results and reports (default: from the host and port)")
    group.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="an extra request header, "
                       "repeatable (an API key: sent, never written to results, logs or plan files)")
    group.add_argument("--header-env", action="append", metavar="VAR", help="an extra request header from the "
                       "environment variable VAR, whose value is 'NAME: VALUE' (kept out of argv and shell history), "
                       "repeatable")
    group.add_argument("--header-file", metavar="FILE", help="extra request headers from FILE, one 'NAME: VALUE' "
                       "per line (# comments and blank lines skipped)")
    group.add_argument("--insecure", action="store_true", help="https: do not verify the server's certificate")
    group.add_argument("--ca-cert", metavar="FILE", help="https: verify the server against this CA bundle")
    group.add_argument("--metrics-url", metavar="URL", help="the server's Prometheus page, read each second of a "
                       "cell, so the report shows the server's own request duration beside the client's")
    group.add_argument("--metrics-series", metavar="NAME", help="its request-duration histogram or summary "
                       "(default: the first on the page whose name reads as one)")
    group.add_argument("--worker-url", metavar="URL", help="with --expect-workers: the scheme://host:port the "
                       "workers send to when they reach the endpoint by another name than this host does (a "
                       "cluster's Service, while this host goes through an ingress); the path is --url's")


def over_protocols(specs: list[RuntimeSpec], protocols: str) -> list[RuntimeSpec]:
    """Each runtime once per asked protocol it serves (its main one under its own name, another as the
    variant <name>-<protocol>); a protocol no asked runtime serves is a usage error."""
    from bench.config import available_runtimes, load_runtime
    from bench.protocol_variants import speaking, speaks
    from bench.protocols import CODECS

    asked = [name.strip() for name in protocols.split(",") if name.strip()]
    for name in asked:
        if name not in CODECS:
            raise BenchError(f"--protocol {name}: unknown", hint=f"one of: {', '.join(sorted(CODECS))}")
    chosen = [speaking(spec, name) for spec in specs for name in asked if name in speaks(spec)]
    for name in asked:
        if not any(spec.protocol == name for spec in chosen):
            speakers = [other for other in available_runtimes() if name in speaks(load_runtime(other))]
            raise BenchError(f"--protocol {name}: none of the runtimes asked for serves it",
                             hint=f"runtimes that do: {', '.join(speakers)}" if speakers else
                             "a runtime declares extra protocols under protocols: in its runtime.yaml")
    return chosen


def url_options(args: argparse.Namespace) -> UrlOptions | None:
    """The url target's options, checked; None for other targets (which refuse them)."""
    from bench.targets.url import UrlOptions

    given = [flag for flag, value in (("--url", args.url), ("--name", args.name),
                                      ("--header", args.header), ("--header-env", args.header_env),
                                      ("--header-file", args.header_file), ("--insecure", args.insecure),
                                      ("--ca-cert", args.ca_cert), ("--metrics-url", args.metrics_url),
                                      ("--metrics-series", args.metrics_series),
                                      ("--worker-url", getattr(args, "worker_url", None))) if value]
    if args.target != "url":
        if given:
            raise BenchError(f"{given[0]} applies to --target url only", hint="add --target url, or drop it")
        return None
    if args.runtime != "all":
        raise BenchError("--runtime does not apply to --target url: the endpoint is the runtime",
                         hint="name it with --name")
    worker_url = getattr(args, "worker_url", None)
    if worker_url is not None and not getattr(args, "expect_workers", None):
        raise BenchError("--worker-url is where remote workers send the load: it needs --expect-workers N",
                         hint="add --expect-workers N, or drop --worker-url")
    headers = [*(args.header or ()), *from_environment(args.header_env or ()),
               *(from_file(Path(args.header_file)) if args.header_file else ())]
    return UrlOptions.parse(args.url, args.protocol, args.name, headers, args.insecure, args.ca_cert,
                            args.metrics_url, args.metrics_series, worker_url)


def from_environment(variables: Sequence[str]) -> list[str]:
    """--header-env: each variable's value, one 'NAME: VALUE' header (an unset variable is named, never shown)."""
    headers = []
    for variable in variables:
        value = os.environ.get(variable)
        if not value:
            raise BenchError(f"--header-env {variable}: the variable is not set or empty",
                             hint=f"export {variable}='Authorization: Bearer ...' first")
        headers.append(value)
    return headers


def from_file(path: Path) -> list[str]:
    """--header-file: one 'NAME: VALUE' per line; # comments and blank lines skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"--header-file {path}: cannot be read ({type(exc).__name__})",
                         hint="a text file with one 'NAME: VALUE' per line") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def target_options(args: argparse.Namespace, cpus: CpuPlan) -> TargetOptions:
    from bench.cli.remote_options import remote_of
    from bench.targets.factory import TargetOptions

    base_image, offline = image_settings(args)
    url, remote = url_options(args), remote_of(args)
    if url is not None and url.headers and remote is not None and not remote.share_headers:
        raise BenchError("request headers and remote workers: the workers need the headers to reach the endpoint, "
                         "and would receive them over the network in the clear", hint="add --share-headers to send "
                         "them anyway (on a private network or an SSH tunnel), or drop the headers")
    return TargetOptions(cpus=cpus, base_image=base_image, offline=offline, memory=args.memory, url=url, remote=remote)


def writable(path: Path) -> None:
    """Fail now, not after a long measurement, when an output file cannot be written."""
    if not path.parent.exists() or not os.access(path.parent, os.W_OK):
        raise BenchError(f"cannot write {path}: folder {path.parent} is missing or read-only",
                         hint="choose a path in an existing, writable folder")


def log_dir(command: str) -> Path:
    """A fresh folder name for one command's server or build logs."""
    from bench.config import state_dir

    return state_dir() / "logs" / f"{command}-{datetime.now():%Y%m%d-%H%M%S}"
