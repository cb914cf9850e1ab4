"""`bench check`: start every runtime with every model, one pair at a time, and compare answers.

One failed pair never stops the others; every pair's server is stopped before the next starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.config import ModelSpec, RuntimeSpec
from bench.errors import BenchError, DeployError
from bench.measure.parity import check_parity
from bench.models.registry import resolve
from bench.provision.envs import require_env
from bench.provision.support import served, why_unsupported
from bench.targets.base import Deployment, Target


@dataclass(frozen=True)
class CheckRow:
    runtime: str
    model: str
    status: str  # ok | mismatch | failed | unsupported
    ok: bool
    max_abs_diff: float | None
    startup_s: float | None
    rss_mb: float | None
    model_version: str | None
    error: str | None
    log: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def counts_against(self) -> bool:
        """A mismatch or failure fails the check; a model the runtime declares it cannot serve does not."""
        return not self.ok and self.status != NOT_SUPPORTED


NOT_SUPPORTED = "unsupported"


def check_pair(target: Target, runtime: RuntimeSpec, model_spec: ModelSpec, log_dir: Path) -> CheckRow:
    def failed(error: str, log: str | None = None, version: str | None = None) -> CheckRow:
        return CheckRow(runtime.name, model_spec.name, "failed", False, None, None, None, version, error, log)

    try:
        model = resolve(model_spec)
    except BenchError as exc:
        return failed(f"model unavailable: {exc}")
    reason = why_unsupported(runtime, model, environments=target.builds_environments)
    if reason is not None:
        return CheckRow(runtime.name, model_spec.name, NOT_SUPPORTED, False, None, None, None, model.version,
                        f"unsupported: {reason}", None)
    try:
        deployment = target.deploy(runtime, served(runtime, model), log_dir)
    except DeployError as exc:
        return failed(exc.summary(), str(log_dir / f"{runtime.name}-{model.name}.log"), model.version)
    with deployment:
        parity = check_parity(deployment.endpoint, model, runtime.parity_tolerance(model.spec))
        rss = deployment.rss_mb()
        if not parity.answered:
            _let_a_dying_server_exit(deployment)
        if not deployment.alive():
            return failed(f"server died during the parity check ({parity.error or 'after answering'})",
                          str(deployment.log_path), model.version)
    status = "ok" if parity.ok else ("mismatch" if parity.answered else "failed")
    return CheckRow(runtime.name, model.name, status, parity.ok, parity.max_abs_diff,
                    round(deployment.startup_s, 3), None if rss is None else round(rss, 1), model.version, parity.error,
                    str(deployment.log_path))


def _let_a_dying_server_exit(deployment: Deployment, grace_s: float = 1.0) -> None:
    """A crashing server closes its sockets before the kernel reports it gone: wait a moment so the
    crash is reported as a crash, not as a refused request."""
    deadline = time.monotonic() + grace_s
    while deployment.alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def run_check(target: Target, runtimes: list[RuntimeSpec], models: list[ModelSpec], log_dir: Path,
              on_row: Callable[[CheckRow, int, int], None] = lambda _row, _k, _n: None,
              say: Callable[[str], None] = lambda _msg: None) -> list[CheckRow]:
    """Every runtime x model pair, provisioning models and environments first."""
    for spec in models:
        resolve(spec, say)
    usable: list[RuntimeSpec] = []
    rows: list[CheckRow] = []
    for runtime in runtimes:
        try:
            require_env(runtime, lambda name, status: say(f"{name} environment: {status}"))
            usable.append(runtime)
        except BenchError as exc:
            rows += [CheckRow(runtime.name, spec.name, "failed", False, None, None, None, None,
                              f"environment build failed: {exc.message.splitlines()[0]}", None) for spec in models]
    total = len(runtimes) * len(models)
    for row in rows:
        on_row(row, len(rows), total)
    for runtime in usable:
        for spec in models:
            started = time.monotonic()
            say(f"{runtime.name} x {spec.name}: starting")
            row = check_pair(target, runtime, spec, log_dir)
            rows.append(row)
            say(f"{runtime.name} x {spec.name}: {row.status} in {time.monotonic() - started:.1f} s")
            on_row(row, len(rows), total)
    return rows
