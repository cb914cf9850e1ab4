"""Docker target: each runtime as a container of its image, with equal CPU and memory limits.

The container runs exactly the command runtime.yaml gives (rendered with the image's paths), so the
local and Docker results differ only by what containers cost. Where the daemon has a default bridge,
the port is published on 127.0.0.1 only; where it has none (as on this project's machines) the
container shares the host's network and binds 127.0.0.1 itself. Every container is removed after its
cell, on failure, on Ctrl-C and at exit (bench.targets.owned) and, for a harness that was killed outright,
by the next Docker run: containers carry their owner (pid, its start time, the host) as labels, and
those of an owner that no longer runs are removed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from bench.config import RuntimeSpec
from bench.errors import BenchError, DeployError
from bench.models.registry import LocalModel
from bench.ports import free_port
from bench.provision.containers import docker, has_bridge_network, inspect, require_daemon
from bench.provision.envs import pinned_requirements
from bench.provision.image_layout import image_layout
from bench.provision.images import ImageInfo, ensure_image
from bench.results.schema import Provisioning
from bench.targets.base import Deployment, Provisioned, Say, Target, stopped_unless_ready, wait_until_ready
from bench.targets.confinement import described, server_flags
from bench.targets.container_tree import ContainerTree
from bench.targets.launch import HOST, CpuPlan, default_cpu_plan, render_launch, thread_env
from bench.targets.orphans import Owner
from bench.targets.owned import OWNED

OWNER_LABEL = "servebench.owner"  # the harness's pid
OWNER_STARTED_LABEL = "servebench.owner-started"  # its start time: a pid alone is reused
OWNER_HOST_LABEL = "servebench.owner-host"  # pids mean something on this host only
DEFAULT_MEMORY = "4g"


def remove_container(container: str) -> None:
    docker("rm", "-f", container, check=False, timeout=60)


def owner_labels() -> dict[str, str]:
    """Who created a container: this process, as the next run can check whether it still runs."""
    return Owner.me().labels(OWNER_LABEL, OWNER_STARTED_LABEL, OWNER_HOST_LABEL)


def reap_orphans() -> list[str]:
    """Remove the containers of harness processes on this host that no longer run (a SIGKILL gives a harness
    no chance to clean up); returns what it removed, for the user to read. A live harness's containers (a
    side-by-side run) are left alone, as are those of other hosts and containers without the full set of
    owner labels."""
    fields = "\t".join(f'{{{{.Label "{label}"}}}}' for label in (OWNER_LABEL, OWNER_STARTED_LABEL, OWNER_HOST_LABEL))
    listed = docker("ps", "-a", "--filter", f"label={OWNER_LABEL}", "--format", "{{.Names}}\t" + fields,
                    check=False, timeout=60)
    removed = []
    for line in listed.stdout.splitlines():
        container, pid, started, owner_host = [*line.split("\t"), "", "", ""][:4]
        owner = Owner.parse(pid, started, owner_host)
        if owner is not None and owner.left_it_behind():
            remove_container(container)
            removed.append(f"container {container} (its harness, pid {pid}, no longer runs)")
    return removed


@dataclass(eq=False)
class DockerDeployment(Deployment):
    container: str = ""

    def _state(self) -> dict[str, object]:
        details = inspect("container", self.container)
        state = details.get("State") if details else None
        return state if isinstance(state, dict) else {}

    def alive(self) -> bool:
        return bool(self._state().get("Running"))

    def exit_reason(self) -> str | None:
        state = self._state()
        if state.get("Running"):
            return None
        detail = " (out of memory)" if state.get("OOMKilled") else f" ({state['Error']})" if state.get("Error") else ""
        return f"container exited with code {state.get('ExitCode')}{detail}"

    def save_log(self) -> None:
        result = docker("logs", self.container, check=False, timeout=60)
        with self.log_path.open("a") as log:
            log.write(result.stdout + result.stderr)

    def log_tail(self, lines: int = 25) -> str:
        result = docker("logs", "--tail", str(lines), self.container, check=False, timeout=30)
        return (result.stdout + result.stderr).strip() or super().log_tail(lines)

    def release(self) -> None:
        if not self.container:
            return
        self.save_log()
        if isinstance(self.tree, ContainerTree):
            self.tree.remove_samplers()
        remove_container(self.container)


class DockerTarget(Target):
    """Runtimes as containers of their images, limited to the server CPUs and a memory cap."""

    name = "docker"

    def __init__(self, cpus: CpuPlan | None = None, base_image: str = "python:3.11-slim", offline: bool = False,
                 memory: str = DEFAULT_MEMORY) -> None:
        require_daemon()
        self.reaped = tuple(reap_orphans())
        self.cpus = cpus or default_cpu_plan()
        self.base_image = base_image
        self.offline = offline
        self.memory = memory
        self.bridge = has_bridge_network()
        self.images: dict[str, ImageInfo] = {}

    def image_for(self, runtime: RuntimeSpec, log_dir: Path, say: Say = lambda _msg: None) -> ImageInfo:
        if runtime.name not in self.images:
            self.images[runtime.name] = ensure_image(
                runtime, self.base_image, self.offline, log_dir / f"{runtime.name}-image-build.log",
                lambda name, status: say(f"{name} image: {status}"))
        return self.images[runtime.name]

    def provision(self, runtime: RuntimeSpec, log_dir: Path, say: Say) -> Provisioned:
        image = self.image_for(runtime, log_dir, say)
        packages = pinned_requirements(runtime)
        return Provisioned(packages, Provisioning(
            kind="image", identity=image.tag, packages=len(packages), size_mb=image.size_mb, build_s=image.build_s,
            built_now=image.built_now, facts={"base_image": image.base_image, "offline_build": image.offline}))

    def deploy(self, runtime: RuntimeSpec, model: LocalModel, log_dir: Path) -> DockerDeployment:
        try:
            image = self.image_for(runtime, log_dir)
            layout = image_layout(runtime)
        except BenchError as exc:
            raise DeployError(f"{runtime.name} image: {exc.message}", hint=exc.hint) from None
        port = free_port()
        launch = render_launch(runtime, model.name, layout.values("0.0.0.0" if self.bridge else HOST, port))
        endpoint = launch.endpoint
        if self.bridge and runtime.served_on is not None:
            raise DeployError(f"{runtime.name}: {runtime.protocol} on a bridge network is not supported yet",
                              hint="measure it with host networking (the default here) or over its main protocol")
        if self.bridge:  # the server binds 0.0.0.0 inside its own namespace; the host sees 127.0.0.1 only
            endpoint = type(endpoint)(f"http://{HOST}:{port}", endpoint.predict_path, endpoint.readiness_path,
                                      endpoint.protocol, endpoint.model_name)
        name = f"servebench-{runtime.name}-{model.name}-{secrets.token_hex(3)}"
        network = ["-p", f"{HOST}:{port}:{port}"] if self.bridge else ["--network", "host"]
        environment = {**thread_env(len(self.cpus.server)), **launch.env}
        labels = [part for key, value in owner_labels().items() for part in ("--label", f"{key}={value}")]
        create = ["create", "--name", name, *labels, *network,
                  "--cpuset-cpus", ",".join(map(str, self.cpus.server)), "--cpus", str(len(self.cpus.server)),
                  "--memory", self.memory, "--no-healthcheck", *server_flags(layout.writable, layout.uid),
                  "-v", f"{model.model_dir}:{layout.model_dir}:ro"]
        for key, value in environment.items():
            create += ["-e", f"{key}={value}"]
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{runtime.name}-{model.name}.log"
        log_path.write_text(f"$ docker {' '.join(create)} {image.tag} {' '.join(launch.command)}\n")
        created = time.monotonic()
        try:
            container = docker(*create, image.tag, *launch.command, timeout=600).stdout.strip()
        except BenchError as exc:
            raise DeployError(f"{runtime.name}: {exc.message}", hint=exc.hint) from None
        deployment = DockerDeployment(
            runtime=runtime, model=model, endpoint=endpoint, log_path=log_path, container=container,
            fairness={**self.cpus.as_dict(), "threads_env": len(self.cpus.server), "cpus_limit": len(self.cpus.server),
                      "memory_limit": self.memory, "network": "bridge, 127.0.0.1 only" if self.bridge else "host",
                      "image": image.tag, "image_size_mb": image.size_mb, "image_build_s": image.build_s,
                      "base_image": image.base_image, "offline_build": image.offline, "confinement": described(),
                      **runtime.settings},
        )
        OWNED.add(deployment)
        create_s = time.monotonic() - created
        started = time.monotonic()
        with stopped_unless_ready(deployment, f"{runtime.name} with {model.name} in Docker"):
            docker("start", container, timeout=120)
            details = inspect("container", container) or {}
            pid = int(details.get("State", {}).get("Pid") or 0)
            deployment.tree = ContainerTree(pid, name, image.tag, owner_labels()) if pid else None
            wait_until_ready(endpoint.readiness_url, runtime.startup_timeout_s, deployment.exit_reason)
        deployment.startup_s = time.monotonic() - started
        deployment.fairness["container_create_s"] = round(create_s, 3)
        return deployment
