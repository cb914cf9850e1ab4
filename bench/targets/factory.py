"""Targets by name: what `--target` chooses from, and how each is built from the same options.

Each constructor imports its target lazily: building the parser (`bench --help`) needs only the names,
not Docker or Kubernetes clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.errors import BenchError
from bench.targets.orphans import reap_orphan_processes

if TYPE_CHECKING:
    from bench.load.plan import RemoteWorkers
    from bench.targets.base import Target
    from bench.targets.launch import CpuPlan
    from bench.targets.url import UrlOptions

@dataclass(frozen=True)
class TargetOptions:
    """Everything a target may need; each target takes what applies to it (local ignores images)."""

    cpus: CpuPlan
    base_image: str
    offline: bool
    memory: str
    url: UrlOptions | None = None  # the url target's endpoint
    remote: RemoteWorkers | None = None  # remote workers; those `in_cluster` the KServe target starts itself


def _local(options: TargetOptions) -> Target:
    from bench.targets.local import LocalTarget

    return LocalTarget(options.cpus)


def _docker(options: TargetOptions) -> Target:
    from bench.targets.docker import DockerTarget

    return DockerTarget(options.cpus, base_image=options.base_image, offline=options.offline, memory=options.memory)


def _kserve(options: TargetOptions) -> Target:
    from bench.targets.kserve.target import KServeTarget

    workers = options.remote if options.remote is not None and options.remote.in_cluster else None
    return KServeTarget(options.cpus, base_image=options.base_image, offline=options.offline, memory=options.memory,
                        workers=workers)


def _url(options: TargetOptions) -> Target:
    from bench.targets.url import UrlTarget

    if options.url is None:
        raise BenchError("--target url needs --url", hint="for example --url http://127.0.0.1:8080/predict")
    return UrlTarget(options.url)


TARGETS: dict[str, Callable[[TargetOptions], Target]] = {"local": _local, "docker": _docker, "kserve": _kserve,
                                                         "url": _url}


# targets that start remote workers themselves (`--cluster-workers N`: pods in their cluster)
CLUSTER_WORKER_TARGETS = ("kserve",)


def make_target(name: str, options: TargetOptions) -> Target:
    """The named target; an unknown name is a usage error, a missing prerequisite (no Docker daemon) is
    raised by the target itself. What a dead harness left behind is removed first (`target.reaped` says what)."""
    constructor = TARGETS.get(name)
    if constructor is None:
        raise BenchError(f"target '{name}' is not available", hint=f"valid: {', '.join(TARGETS)}")
    reaped = reap_orphan_processes()  # whatever the target, a dead harness's servers and generators were local
    target = constructor(options)
    target.reaped = (*reaped, *target.reaped)
    return target
