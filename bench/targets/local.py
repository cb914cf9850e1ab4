"""Local target: each runtime as a process tree of its own virtualenv, pinned to its own CPUs.

The server is started in a new session (its own process group) so that stopping it kills every worker it
forked; the Linux parent-death signal and the owned-resource registry (bench.targets.owned: Ctrl-C, atexit)
make sure no server outlives the harness, even when the harness is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.config import RuntimeSpec, shared_code_dir
from bench.errors import DeployError
from bench.models.registry import LocalModel
from bench.ports import free_port
from bench.process_tree import ProcessTree
from bench.processes import inherited_environment, pin_and_tie_to_parent
from bench.provision.envs import RuntimeEnv, require_env
from bench.provision.model_envs import Unsupported
from bench.provision.support import env_note, serving_env
from bench.results.schema import Provisioning
from bench.targets.base import Deployment, Provisioned, Say, Target, stopped_unless_ready, wait_until_ready
from bench.targets.launch import HOST, CpuPlan, default_cpu_plan, render_launch, thread_env
from bench.targets.owned import OWNED

STOP_GRACE_S = 10.0
INTERRUPTED_GRACE_S = 0.3  # after Ctrl-C: the user is waiting, and nothing more is measured



@dataclass(eq=False)
class LocalDeployment(Deployment):
    process: subprocess.Popen[bytes] | None = None
    work_dir: Path | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_reason(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        return f"exit code {self.process.returncode}"

    def kill(self) -> None:
        """A second Ctrl-C: the server's whole group at once, no grace."""
        if self.process is not None:
            _signal_group(self.process.pid, signal.SIGKILL)

    def release(self) -> None:
        if self.process is None:
            return
        process = self.process
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        grace = INTERRUPTED_GRACE_S if OWNED.interrupted else STOP_GRACE_S
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)
        # workers that left the process group, or ignored SIGTERM after their parent went
        _, still_alive = psutil.wait_procs(descendants, timeout=min(3.0, grace))
        for leftover in still_alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
        psutil.wait_procs(still_alive, timeout=3)  # a signal is delivered asynchronously: see it land
        _signal_group(process.pid, signal.SIGKILL)
        if self.work_dir is not None:
            _remove_tree(self.work_dir)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class LocalTarget(Target):
    """Runtimes as subprocesses bound to 127.0.0.1, each in its own virtualenv."""

    name = "local"
    builds_environments = True

    def __init__(self, cpus: CpuPlan | None = None, host: str = HOST, port: int | None = None) -> None:
        self.cpus = cpus or default_cpu_plan()
        self.host = host
        self.port = port

    def provision(self, runtime: RuntimeSpec, log_dir: Path, say: Say) -> Provisioned:
        env = require_env(runtime, lambda name, status: say(f"{name} environment: {status}"))
        return Provisioned(env.packages, Provisioning(kind="virtualenv", identity=env.key, packages=len(env.packages),
                                                      size_mb=env.size_mb, build_s=env.build_s))

    def environment(self, runtime_env: RuntimeEnv, rendered: dict[str, str]) -> dict[str, str]:
        """The server's environment: the allow-listed part of the harness's, the runtime's venv activated, one
        BLAS/OpenMP thread per CPU, and what runtime.yaml declares."""
        base = inherited_environment()
        return {
            **base,
            "PATH": f"{runtime_env.bin_dir}{os.pathsep}{base.get('PATH', '')}",
            "VIRTUAL_ENV": str(runtime_env.path),
            **thread_env(len(self.cpus.server)),
            **rendered,
        }

    def deploy(self, runtime: RuntimeSpec, model: LocalModel, log_dir: Path) -> LocalDeployment:
        found = serving_env(runtime, model)
        if isinstance(found, Unsupported):
            raise DeployError(f"{runtime.name} cannot serve {model.name}: unsupported: {found.reason}")
        runtime_env = found.env if found is not None else require_env(runtime)
        model_facts = {} if found is None else {"model_env": env_note(found)}
        port = self.port or free_port(self.host)
        work_dir = Path(tempfile.mkdtemp(prefix=f"servebench-{runtime.name}-"))
        launch = render_launch(runtime, model.name, {
            "python": str(runtime_env.python), "bin": str(runtime_env.bin_dir), "host": self.host,
            "port": str(port), "model_dir": str(model.model_dir), "runtime_dir": str(runtime.folder),
            "shared_dir": str(shared_code_dir()), "work_dir": str(work_dir),
        })
        command, endpoint = launch.command, launch.endpoint
        rendered_env = launch.env
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{runtime.name}-{model.name}.log"
        deployment = LocalDeployment(
            runtime=runtime, model=model, endpoint=endpoint, log_path=log_path, work_dir=work_dir,
            fairness={**self.cpus.as_dict(), "threads_env": len(self.cpus.server), **runtime.settings,
                      **model_facts},
        )
        started = time.monotonic()
        with log_path.open("wb") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            try:
                deployment.process = subprocess.Popen(
                    command, cwd=runtime.folder, env=self.environment(runtime_env, rendered_env),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=lambda: pin_and_tie_to_parent(self.cpus.server),
                )
            except OSError as exc:
                _remove_tree(work_dir)
                raise DeployError(f"cannot start {command[0]}: {exc.strerror}") from None
        OWNED.add(deployment)
        deployment.tree = ProcessTree(deployment.process.pid)
        deployment.python = runtime_env.python
        with stopped_unless_ready(deployment, f"{runtime.name} with {model.name}"):
            wait_until_ready(endpoint.readiness_url, runtime.startup_timeout_s, deployment.exit_reason)
        deployment.startup_s = time.monotonic() - started
        return deployment
