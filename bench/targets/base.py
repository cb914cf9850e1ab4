"""The Target interface: deploy one runtime with one model and hand back an Endpoint.

Everything above this layer (parity, load, statistics) sees only the Endpoint and the Deployment's
measurements, never how or where the server runs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import requests

from bench.config import RuntimeSpec
from bench.errors import BenchError, DeployError
from bench.models.registry import LocalModel
from bench.process_tree import ProcessTree
from bench.provision.support import served, why_unsupported
from bench.redact import redact_uri
from bench.results.schema import Provisioning
from bench.targets.owned import OWNED


@dataclass(frozen=True)
class Endpoint:
    """How to reach a deployed model: all a load generator or parity check needs. Extra headers (an external
    endpoint's API key) are kept out of repr, so no log line or error message shows them."""

    base_url: str
    predict_path: str
    readiness_path: str
    protocol: str
    model_name: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    verify_tls: bool = True
    ca_cert: str | None = None
    ready_base_url: str | None = None  # where readiness is asked when predictions go elsewhere (gRPC)
    metrics_url: str | None = None  # the server's Prometheus page, when it has one (runtime.yaml `metrics:`)
    # where remote workers send the load when they reach the server by another address than this harness does
    # (a cluster's own Service name, while the harness goes through a port-forward or an ingress)
    worker_base_url: str | None = None

    @property
    def tls_verify(self) -> bool | str:
        """What requests' `verify` takes: a CA bundle's path, or whether to verify at all."""
        return self.ca_cert if self.ca_cert else self.verify_tls

    @property
    def predict_url(self) -> str:
        return self.base_url + self.predict_path

    @property
    def readiness_url(self) -> str:
        return (self.ready_base_url or self.base_url) + self.readiness_path


@dataclass(eq=False)
class Deployment(ABC):
    """A running server. Use as a context manager so it is always stopped.

    A target adds it to bench.targets.owned.OWNED once there is something to stop; stop() takes it out."""

    runtime: RuntimeSpec
    model: LocalModel
    endpoint: Endpoint
    log_path: Path
    startup_s: float = 0.0
    fairness: dict[str, object] = field(default_factory=dict)  # CPUs, limits, image...: see measure.cell
    tree: ProcessTree | None = None  # the server's processes as the host sees them (containers included)
    python: Path | None = None  # the runtime environment's interpreter on this machine (local: its virtualenv)
    _stopped: bool = field(default=False, init=False, repr=False)

    @abstractmethod
    def alive(self) -> bool: ...

    def rss_mb(self) -> float | None:
        """Resident memory of everything the server runs, in MiB; None where the target cannot see it."""
        return self.tree.rss_mb() if self.tree else None

    def cpu_percent(self) -> float | None:
        """CPU used since the previous call, in percent of one core; None where the target cannot see it."""
        return self.tree.cpu_percent() if self.tree else None

    def stop(self) -> None:
        """Stop the server and everything it started; idempotent, and it leaves the owned registry."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.release()
        finally:
            OWNED.discard(self)

    @abstractmethod
    def release(self) -> None:
        """What stopping means on this target (the process tree, the container, the InferenceService); once."""

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def stopped_unless_ready(deployment: Deployment, where: str) -> Iterator[None]:
    """Bring a deployment up inside this block: if it fails, the deployment is stopped (nothing is left
    running) and the failure becomes a DeployError naming `where`, with the log tail that explains it."""
    try:
        yield
    except (DeployError, BenchError) as exc:
        tail = exc.log_tail if isinstance(exc, DeployError) and exc.log_tail else deployment.log_tail()
        deployment.stop()
        raise DeployError(f"{where}: {exc.message}", redact_uri(tail), exc.hint) from None  # it goes into results
    except BaseException:
        deployment.stop()
        raise


@dataclass(frozen=True)
class Provisioned:
    """What a target prepared for a runtime (an environment, an image): its packages and its costs."""

    packages: dict[str, str]
    record: Provisioning


Say = Callable[[str], None]


@dataclass(frozen=True)
class Rehearsal:
    """What a rehearsal (a dry run) stands in for at each deployment: the measurements a run would make and
    the load generator's size, for targets that render load of their own (KServe's in-cluster Locust)."""

    scenario: str
    measurements: int
    generator_processes: int
    out_dir: Path


class Target(ABC):
    """A place runtimes run: local processes, Docker containers, a KServe cluster."""

    name: str
    # what the target removed when it was made: resources a harness that no longer runs left behind
    reaped: tuple[str, ...] = ()
    # it runs servers in environments it builds here, where a team's model's requirements must be met
    builds_environments: bool = False

    @abstractmethod
    def provision(self, runtime: RuntimeSpec, log_dir: Path, say: Say) -> Provisioned:
        """Build or reuse what the runtime needs here (raises BenchError when that fails)."""

    @abstractmethod
    def deploy(self, runtime: RuntimeSpec, model: LocalModel, log_dir: Path) -> Deployment:
        """Start the runtime serving the model and wait until it is ready, or raise DeployError."""

    def expand_runtimes(self, runtimes: list[RuntimeSpec]) -> list[RuntimeSpec]:
        """The runtimes this target runs for the ones asked for (KServe adds its stock-runtime variants)."""
        return runtimes

    def rehearsal_artifacts(self, deployment: Deployment, rehearsal: Rehearsal) -> None:  # noqa: B027 - optional
        """Files a rehearsal leaves for one deployment beyond what deploy() writes; none by default."""


def rehearse(target: Target, runtimes: list[RuntimeSpec], models: list[LocalModel], rehearsal: Rehearsal,
             say: Say) -> None:
    """A run's plan walked through the Target interface without measuring: per runtime (as the target expands
    them) provision, then per model deploy, say where parity and load would run, sample the server once as a
    run does, and stop. Through a target whose commands are only printed (KServe with a dry-run Runner) this
    is the dry run: it shows a run's steps because it takes them, not a second copy of the loop."""
    log_dir = rehearsal.out_dir / "servers"
    for runtime in target.expand_runtimes(runtimes):
        say(f"--- {runtime.name}")
        target.provision(runtime, log_dir, say)
        for model in models:
            reason = why_unsupported(runtime, model, environments=target.builds_environments)
            if reason is not None:
                say(f"bench: {runtime.name} x {model.name} unsupported: {reason}; skipped")
                continue
            with target.deploy(runtime, served(runtime, model), log_dir) as deployment:
                endpoint = deployment.endpoint
                workers = (f"; the remote workers send to {endpoint.worker_base_url}{endpoint.predict_path}"
                           if endpoint.worker_base_url else "")
                say(f"bench: parity check, then {rehearsal.measurements} measurement(s) of scenario "
                    f"{rehearsal.scenario} against {endpoint.predict_url} ({endpoint.protocol}){workers}")
                deployment.cpu_percent()
            target.rehearsal_artifacts(deployment, rehearsal)


def wait_until_ready(url: str, timeout_s: float, still_running: Callable[[], str | None],
                     interval_s: float = 0.05) -> float:
    """Poll a readiness URL until it answers 200; returns seconds waited.

    still_running() returns None while the server lives, or why it died, so a crash fails at once
    instead of waiting out the timeout.
    """
    started = time.monotonic()
    last_problem = "no answer yet"
    with requests.Session() as session:
        while True:
            died = still_running()
            if died is not None:
                raise DeployError(f"server exited before it was ready: {died}")
            try:
                response = session.get(url, timeout=2)
                if response.status_code == 200:
                    return time.monotonic() - started
                last_problem = f"HTTP {response.status_code} from {url}"
            except requests.RequestException as exc:
                last_problem = type(exc).__name__
            if time.monotonic() - started > timeout_s:
                raise DeployError(f"not ready after {timeout_s:.0f} s ({last_problem})")
            time.sleep(interval_s)
