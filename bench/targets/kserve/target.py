"""KServe target: each runtime as an InferenceService (Standard mode) on the kind cluster of `bench cluster up`.

The images are the Docker target's (same content-hash tags), put on the node with `kind load docker-image`
and never pulled (imagePullPolicy IfNotPresent). Each runtime x model is one InferenceService with a custom
predictor container derived from runtime.yaml and the Dockerfile; a runtime whose runtime.yaml has a
`kserve.stock` block also runs as `<name>-kserve` on the stock ClusterServingRuntime it names. The harness
reaches a predictor through `kubectl port-forward` on 127.0.0.1, runs the same parity check and load as
elsewhere, samples the pod's CPU and memory from metrics-server, and deletes the InferenceService after its
cell, on failure, on Ctrl-C and at exit (bench.targets.owned). Every cluster command goes through a Runner,
so `--dry-run` walks a run's own steps (bench.targets.base.rehearse) and prints every command instead of
running it.

With `--cluster-workers N` the load comes from inside the cluster: N pods of the load generator's image run
`bench worker` against the harness's own Locust master (on kind's Docker network gateway) and send to each
predictor's in-cluster Service; their samples come back over Locust's messages, as from any remote worker.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.config import ModelSpec, RuntimeSpec
from bench.errors import BenchError, DeployError
from bench.models.registry import LocalModel, find_local, local_root, resolve
from bench.ports import free_port
from bench.provision.envs import pinned_requirements
from bench.provision.image_layout import image_layout
from bench.provision.images import planned_tag
from bench.results.schema import Provisioning
from bench.runtime_options import KServeStock
from bench.targets.base import (
    Deployment,
    Endpoint,
    Provisioned,
    Rehearsal,
    Say,
    Target,
    rehearse,
    stopped_unless_ready,
    wait_until_ready,
)
from bench.targets.docker import DockerTarget
from bench.targets.kserve import cluster, manifests, versions
from bench.targets.kserve.cluster import kubectl, models_root
from bench.targets.kserve.manifests import NAMESPACE, Manifest, Resources, Served
from bench.targets.kserve.platform import render_platform
from bench.targets.kserve.reaping import label_with_owner, reap_inference_services
from bench.targets.kserve.runner import Background, Runner
from bench.targets.kserve.validate import dump, validate
from bench.targets.kserve.workers import WorkerPods, start_worker_pods
from bench.targets.launch import HOST, CpuPlan, default_cpu_plan
from bench.targets.owned import OWNED

if TYPE_CHECKING:
    from bench.load.plan import RemoteWorkers

READY_TIMEOUT_S = 600  # image already on the node; this covers scheduling and the model's load
METRICS_EVERY_S = 5.0  # metrics-server itself resolves ~15 s; do not shell out to kubectl every second
STOCK_IMAGE_ENV = "SERVEBENCH_KSERVE_STOCK_IMAGE"  # 1: the stock variant runs the ClusterServingRuntime's image


def _quantity(text: str, units: dict[str, float]) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text.strip())
    if not match or match.group(2) not in units:
        return 0.0
    return float(match.group(1)) * units[match.group(2)]


CPU_UNITS = {"": 100.0, "m": 0.1, "u": 1e-4, "n": 1e-7}  # to percent of one core
MEMORY_UNITS = {"": 2**-20, "Ki": 2**-10, "Mi": 1.0, "Gi": 2**10, "k": 1e3 / 2**20, "M": 1e6 / 2**20}


@dataclass(eq=False)
class KServeDeployment(Deployment):
    runner: Runner = field(default_factory=Runner)
    name: str = ""
    forward: Background | None = None
    _metrics: tuple[float, float, float] = (0.0, 0.0, 0.0)  # when, cpu %, rss MiB

    def _pods(self) -> list[str]:
        return ["--namespace", NAMESPACE, "--selector", f"{manifests.POD_LABEL}={self.name}"]

    def forward_problem(self) -> str | None:
        if self.forward is None or self.forward.alive():
            return None
        return "kubectl port-forward exited (see its log beside the server log)"

    def alive(self) -> bool:
        if self.forward_problem() is not None:
            return False
        ready = self.runner.run(*kubectl("get", "inferenceservice", self.name, "--namespace", NAMESPACE, "--output",
                                         "jsonpath={.status.conditions[?(@.type=='Ready')].status}"), probe=True)
        return self.runner.dry_run or ready.stdout.strip() == "True"

    def _sample(self) -> tuple[float, float]:
        """The pod's CPU (percent of one core) and memory (MiB) from metrics-server; zeros without it."""
        when, cpu, rss = self._metrics
        if time.monotonic() - when >= METRICS_EVERY_S:
            top = self.runner.run(*kubectl("top", "pod", *self._pods(), "--no-headers"), probe=True, timeout=20)
            rows = [line.split() for line in top.stdout.splitlines() if len(line.split()) >= 3]
            cpu = sum(_quantity(row[1], CPU_UNITS) for row in rows)
            rss = sum(_quantity(row[2], MEMORY_UNITS) for row in rows)
            self._metrics = (time.monotonic(), cpu, rss)
        return cpu, rss

    def cpu_percent(self) -> float:
        return self._sample()[0]

    def rss_mb(self) -> float:
        return self._sample()[1]

    def diagnostics(self) -> str:
        """What a failed start leaves to read: the InferenceService's conditions, events, pod logs."""
        parts = []
        for title, command in (
            ("InferenceService", kubectl("get", "inferenceservice", self.name, "--namespace", NAMESPACE,
                                         "--output", "jsonpath={range .status.conditions[*]}{.type}={.status} "
                                                     "{.reason} {.message}{'\\n'}{end}")),
            ("events", kubectl("get", "events", "--namespace", NAMESPACE, "--sort-by=.lastTimestamp")),
            ("pods", kubectl("get", "pods", *self._pods(), "--output", "wide")),
            ("logs", kubectl("logs", *self._pods(), "--all-containers", "--tail=40")),
        ):
            result = self.runner.run(*command, probe=True, timeout=60)
            text = (result.stdout + result.stderr).strip()
            if title == "events":
                text = "\n".join(line for line in text.splitlines() if self.name in line)
            parts.append(f"--- {title}\n{text}")
        return "\n".join(parts)

    def log_tail(self, lines: int = 25) -> str:
        result = self.runner.run(*kubectl("logs", *self._pods(), "--all-containers", f"--tail={lines}"), probe=True,
                                 timeout=60)
        return result.stdout.strip() or super().log_tail(lines)

    def release(self) -> None:
        if not self.runner.dry_run:
            logs = self.runner.run(*kubectl("logs", *self._pods(), "--all-containers", "--tail=-1"), probe=True,
                                   timeout=60)
            with self.log_path.open("a") as log:
                log.write(logs.stdout + logs.stderr)
        if self.forward is not None:
            self.runner.note(f"stop the port-forward of {self.name}")
            self.forward.stop()
        self.runner.run(*kubectl("delete", "inferenceservice", self.name, "--namespace", NAMESPACE,
                                 "--ignore-not-found", "--wait=true", "--timeout=120s"), check=False, timeout=180)


def planned_model(spec: ModelSpec) -> LocalModel:
    """The model's local copy, or where it will be (a dry run neither trains nor downloads)."""
    from bench.models.catalog import fingerprint

    if spec.prepared is not None:  # a team's model is prepared when --model is read
        return resolve(spec)
    local = find_local(spec)
    if local is not None:
        return local
    empty = np.zeros((0, spec.n_features or 0))
    digest = fingerprint(spec)
    return LocalModel(spec, "(not built)", digest, local_root(spec.name) / digest / "model", empty, empty)


class KServeTarget(Target):
    """Runtimes as InferenceServices on the kind cluster, with equal requests = limits."""

    name = "kserve"

    def __init__(self, cpus: CpuPlan | None = None, base_image: str = "python:3.11-slim", offline: bool = False,
                 memory: str = "4g", runner: Runner | None = None, workers: RemoteWorkers | None = None) -> None:
        self.runner = runner or Runner()
        self.workers = workers  # --cluster-workers: started with the first InferenceService, deleted at the end
        self.worker_pods: WorkerPods | None = None
        self.cpus = cpus or default_cpu_plan()
        self.base_image = base_image
        self.offline = offline
        self.resources = Resources(str(len(self.cpus.server)), manifests.k8s_memory(memory))
        self.stock_image = os.environ.get(STOCK_IMAGE_ENV, "") not in ("", "0", "false", "no")
        self.variants: dict[str, RuntimeSpec] = {}  # variant name -> the runtime whose image it runs
        self.tags: dict[str, str] = {}
        self.loaded: set[str] = set()
        self.docker: DockerTarget | None = None  # builds the images; a dry run only names them
        cluster.require_cluster(self.runner)
        if not self.runner.dry_run:
            self.docker = DockerTarget(self.cpus, base_image, offline, memory)
            self.reaped = (*reap_inference_services(self.runner), *self.docker.reaped)

    def expand_runtimes(self, runtimes: list[RuntimeSpec]) -> list[RuntimeSpec]:
        """Each runtime, followed by its stock variant when its runtime.yaml has a kserve.stock block."""
        expanded = []
        asked = {runtime.name for runtime in runtimes}
        for runtime in runtimes:
            expanded.append(runtime)
            stock = runtime.kserve.stock
            if stock is None:
                continue
            name = manifests.stock_variant(runtime)
            if name in asked:
                raise BenchError(f"runtime '{name}' has the name of {runtime.name}'s stock KServe variant",
                                 hint="rename one of them (the variant of runtime X is X-kserve)")
            variant = runtime.model_copy(update={
                "name": name, "protocol": stock.protocol,
                "description": f"{runtime.description}, on KServe's {stock.cluster_runtime} ClusterServingRuntime",
                "settings": {**runtime.settings, "serving_runtime": stock.cluster_runtime},
                "not_supported": {**runtime.not_supported, **stock.not_supported}})
            self.variants[name] = runtime
            expanded.append(variant)
        return expanded

    def _base(self, runtime: RuntimeSpec) -> RuntimeSpec:
        return self.variants.get(runtime.name, runtime)

    def _stock(self, runtime: RuntimeSpec) -> KServeStock | None:
        """The ClusterServingRuntime a stock variant runs on; None for a custom predictor container."""
        return self.variants[runtime.name].kserve.stock if runtime.name in self.variants else None

    def image_tag(self, runtime: RuntimeSpec, log_dir: Path, say: Say = lambda _msg: None) -> str:
        base = self._base(runtime)
        if base.name not in self.tags:
            if self.docker is None:
                self.tags[base.name] = planned_tag(base, self.base_image, self.offline)
            else:
                self.tags[base.name] = self.docker.image_for(base, log_dir, say).tag
        return self.tags[base.name]

    def provision(self, runtime: RuntimeSpec, log_dir: Path, say: Say) -> Provisioned:
        """The Docker target's image, loaded onto the kind node once (kind skips an image already there)."""
        base = self._base(runtime)
        tag = self.image_tag(runtime, log_dir, say)
        if tag not in self.loaded:
            say(f"{base.name} image: loading {tag} into kind cluster {cluster.CLUSTER}")
            self.runner.run("kind", "load", "docker-image", tag, "--name", cluster.CLUSTER, timeout=1800)
            self.loaded.add(tag)
        packages = pinned_requirements(base)
        return Provisioned(packages, Provisioning(
            kind="image", identity=tag, packages=len(packages),
            facts={"kind_cluster": cluster.CLUSTER, "kserve_version": versions.KSERVE,
                   "node_image": versions.NODE_IMAGE}))

    def render(self, runtime: RuntimeSpec, model: LocalModel, log_dir: Path) -> tuple[Manifest, Served]:
        """The runtime x model InferenceService, and how to reach what it serves."""
        base = self._base(runtime)
        tag = self.image_tag(runtime, log_dir)
        layout = image_layout(base)
        uri = manifests.storage_uri(model.model_dir, models_root())
        name = manifests.object_name(runtime.name, model.name)
        stock = self._stock(runtime)
        if stock is not None:
            isvc = manifests.stock_inference_service(name, runtime.name, stock, model.name,
                                                     None if self.stock_image or not stock.own_image else tag,
                                                     layout, self.resources, uri)
            return isvc, Served.of(isvc)
        container, served = manifests.predictor_container(base, model.name, tag, layout, self.resources, uri)
        return manifests.inference_service(name, runtime, model.name, container, served), served

    def fairness(self, runtime: RuntimeSpec, tag: str) -> dict[str, object]:
        stock = self._stock(runtime)
        return {**self.cpus.as_dict(), **self.resources.fairness(), "threads_env": int(float(self.resources.cpu)),
                "network": "kubectl port-forward on 127.0.0.1", "deployment_mode": manifests.DEPLOYMENT_MODE,
                "serving_runtime": stock.cluster_runtime if stock else "custom predictor container",
                "cpu_pinning": "none (CFS quota of the limit; the kind node is not pinned)",
                "image": tag, "kserve_version": versions.KSERVE, "node_image": versions.NODE_IMAGE,
                **({"generator": f"{self.workers.count} worker pod(s) in the cluster, "
                                 f"{manifests.WORKER_RESOURCES.cpu} CPU each, to the predictor's Service"}
                   if self.workers else {}),
                **runtime.settings}

    def deploy(self, runtime: RuntimeSpec, model: LocalModel, log_dir: Path) -> KServeDeployment:
        if runtime.served_on is not None:  # the port-forward carries the HTTP port only
            raise DeployError(f"{runtime.name}: {runtime.protocol} on KServe is not supported yet",
                              hint="measure it on the local or docker target")
        try:
            isvc, served = self.render(runtime, model, log_dir)
        except BenchError as exc:
            raise DeployError(f"{runtime.name} on KServe: {exc.message}", hint=exc.hint) from None
        validate([isvc], "InferenceService")  # an invalid manifest is a bug: stop the run (exit 2)
        label_with_owner(isvc)  # a later run deletes it if this harness dies without doing so
        name = isvc["metadata"]["name"]
        manifest_dir = log_dir.parent / "manifests"
        manifest_dir.mkdir(parents=True, exist_ok=True)
        path = manifest_dir / f"isvc-{name}.yaml"
        path.write_text(dump([isvc]))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{runtime.name}-{model.name}.log"
        local_port = free_port()
        endpoint = Endpoint(f"http://{HOST}:{local_port}", served.predict_path, served.readiness_path,
                            served.protocol, served.model_name,
                            worker_base_url=manifests.predictor_service_url(name) if self.workers else None)
        deployment = KServeDeployment(runtime=runtime, model=model, endpoint=endpoint, log_path=log_path,
                                      runner=self.runner, name=name,
                                      fairness=self.fairness(runtime, self.image_tag(runtime, log_dir)))
        started = time.monotonic()
        with stopped_unless_ready(deployment, f"{runtime.name} with {model.name} on KServe"):
            self.runner.run(*kubectl("apply", "-f", str(path)))
            OWNED.add(deployment)
            waited = self.runner.run(*kubectl("wait", "--for=condition=Ready", f"inferenceservice/{name}",
                                              "--namespace", NAMESPACE, f"--timeout={READY_TIMEOUT_S}s"),
                                     check=False, timeout=READY_TIMEOUT_S + 60)
            if not waited.ok:
                diagnostics = deployment.diagnostics()  # events and pod logs, kept in the cell's log too
                with log_path.open("a") as log:
                    log.write(diagnostics + "\n")
                raise DeployError(f"not Ready after {READY_TIMEOUT_S} s ({waited.tail(1)})", diagnostics)
            deployment.forward = self.runner.spawn(
                *kubectl("port-forward", "--namespace", NAMESPACE, f"deployment/{name}-predictor",
                         f"{local_port}:{served.port}", "--address", HOST),
                log_path=log_dir / f"{runtime.name}-{model.name}-port-forward.log")
            if not self.runner.dry_run:
                wait_until_ready(endpoint.readiness_url, 60, deployment.forward_problem)
        deployment.startup_s = time.monotonic() - started
        if self.workers is not None and self.worker_pods is None:
            self.worker_pods = start_worker_pods(self.runner, self.workers, self.base_image, self.offline, log_dir)
        return deployment

    def close(self) -> None:
        """Delete the worker pods, if any (also done at exit and on Ctrl-C through bench.targets.owned)."""
        if self.worker_pods is not None:
            self.worker_pods.stop()
            self.worker_pods = None

    def rehearsal_artifacts(self, deployment: Deployment, rehearsal: Rehearsal) -> None:
        """The runtime's own platform object (runtime.yaml's platform:) beside its InferenceService."""
        if not isinstance(deployment, KServeDeployment):
            raise TypeError(f"{deployment.runtime.name}: not an InferenceService of this target")
        if deployment.runtime.platform is not None and self._stock(deployment.runtime) is None:
            self._write_platform(deployment, rehearsal.out_dir / "manifests")

    def _write_platform(self, deployment: KServeDeployment, folder: Path) -> None:
        """The runtime's own platform object (runtime.yaml's platform:) around the same predictor container:
        rendered and checked offline, not applied (the cluster has no Seldon or KubeRay operator)."""
        runtime, model = deployment.runtime, deployment.model
        layout = image_layout(runtime)
        tag = self.image_tag(runtime, folder)
        uri = manifests.storage_uri(model.model_dir, models_root())
        container, _ = manifests.predictor_container(runtime, model.name, tag, layout, self.resources, uri)
        values = {"model_name": model.name, "image": tag, "port": layout.port, "model_uri": uri,
                  "models_claim": manifests.MODELS_PVC, "model_path": uri.split("/", 3)[3],
                  "cpu": self.resources.cpu, "memory": self.resources.memory, "uid": layout.uid or 1000,
                  "container_name": manifests.PREDICTOR_CONTAINER}
        manifest = render_platform(runtime, deployment.name, values, container, manifests.image_uid(layout, runtime))
        (folder / f"platform-{deployment.name}.yaml").write_text(dump([manifest]))


Echo = Callable[[str], None]


def dry_run(runtimes: list[RuntimeSpec], models: list[ModelSpec], scenario: str, measurements: int,
            out_dir: Path, echo: Echo, cpus: CpuPlan, base_image: str, offline: bool, memory: str,
            generator_processes: int = 1, workers: RemoteWorkers | None = None) -> list[list[str]]:
    """Render and validate every manifest into out_dir/manifests and print every command of a run
    (cluster up, kind load, apply, wait, port-forward, delete), applying nothing. Returns the commands.

    The run's plan itself is bench.targets.base.rehearse walked through a KServeTarget whose Runner only
    prints; this adds what a run needs first (bench cluster up) and the commands.sh record."""
    lines: list[str] = []

    def show(line: str) -> None:
        lines.append(line)
        echo(line)

    runner = Runner(dry_run=True, echo=show)
    manifest_dir = out_dir / "manifests"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    runner.note("--- bench cluster up")
    cluster.cluster_up(runner, manifest_dir, runner.note)
    target = KServeTarget(cpus, base_image, offline, memory, runner, workers)
    rehearse(target, runtimes, [planned_model(spec) for spec in models],
             Rehearsal(scenario, measurements, generator_processes, out_dir), runner.note)
    target.close()
    runner.note("--- afterwards: bench cluster down")
    (out_dir / "commands.sh").write_text(
        "# Printed by `bench run --target kserve --dry-run`: the commands of a real run, in order. Not a\n"
        "# script to run as is: the harness checks parity and drives the load between these steps.\n"
        + "\n".join(lines) + "\n")
    return runner.history
