"""The Kubernetes objects of a KServe run, rendered as plain dicts (written as YAML, validated, applied).

A predictor container is derived, not hand-written: runtime.yaml's command and env rendered with the
image's layout (read from the runtime's Dockerfile) and a fixed container port, exactly as the Docker
target renders them, so the same image answers the same way in Docker and behind KServe. KServe mounts
the model at /mnt/models from the storageUri (a PVC over the kind node's copy of .servebench/models).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import RuntimeSpec
from bench.errors import BenchError
from bench.load.worker_auth import TOKEN_ENV
from bench.ports import free_port
from bench.provision.image_layout import ImageLayout
from bench.runtime_options import KServeStock
from bench.targets.kserve.pod_security import LEVEL_LABELS, container_context, hardened, scratch_mounts
from bench.targets.launch import render, render_launch, thread_env

NAMESPACE = "servebench"
MODELS_PV = "servebench-models"
MODELS_PVC = "servebench-models"
NODE_MODELS_PATH = "/servebench/models"  # deploy/kind/cluster.yaml's extraMount
PREDICTOR_CONTAINER = "kserve-container"  # the name KServe expects for a custom predictor container
DEPLOYMENT_MODE = "Standard"  # KServe >= 0.15 name of RawDeployment (the old name is still accepted)
POD_LABEL = "serving.kserve.io/inferenceservice"  # KServe's label on every pod of an InferenceService
ANNOTATION = "servebench.io/"
Manifest = dict[str, Any]


@dataclass(frozen=True)
class Resources:
    """Equal for every runtime, and requests = limits (Guaranteed QoS): recorded as fairness settings."""

    cpu: str
    memory: str

    def as_k8s(self) -> dict[str, dict[str, str]]:
        amounts = {"cpu": self.cpu, "memory": self.memory}
        return {"requests": dict(amounts), "limits": dict(amounts)}

    def fairness(self) -> dict[str, str]:
        return {"cpu_request": self.cpu, "cpu_limit": self.cpu, "memory_request": self.memory,
                "memory_limit": self.memory, "qos_class": "Guaranteed"}


def k8s_memory(docker_memory: str) -> str:
    """Docker's --memory form (4g, 512m) as a Kubernetes quantity (4Gi, 512Mi)."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", docker_memory.strip().lower())
    if not match:
        raise BenchError(f"bad memory limit '{docker_memory}'", hint="use forms like 4g or 512m")
    number, unit = match.groups()
    return number + {"k": "Ki", "m": "Mi", "g": "Gi", "": ""}[unit]


def stock_variant(runtime: RuntimeSpec) -> str:
    """The runtime name, in results, of a runtime run on its kserve.stock ClusterServingRuntime: derived from
    the runtime's own name, so a copied runtime folder gets a variant of its own."""
    return f"{runtime.name}-kserve"


def object_name(*parts: str) -> str:
    """A DNS-1035 label; KServe appends '-predictor' (and more) to it, so it must stay short."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if len(name) > 45 or not re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", name):
        raise BenchError(f"'{name}' cannot name an InferenceService (at most 45 characters, a-z0-9 and -)",
                         hint="give the runtime folder a shorter name")
    return name


def storage_uri(model_dir: Path, models_root: Path) -> str:
    """pvc://servebench-models/<model>/<fingerprint>/model: the local copy, as the node sees it."""
    try:
        relative = model_dir.resolve().relative_to(models_root.resolve())
    except ValueError:
        raise BenchError(f"{model_dir} is not under {models_root}",
                         hint="the kind cluster mounts only $SERVEBENCH_HOME/models") from None
    return f"pvc://{MODELS_PVC}/{relative.as_posix()}"


def namespace() -> Manifest:
    """The run's namespace, where the API server itself refuses any pod below the restricted profile."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "servebench", **LEVEL_LABELS}}}


def network_policies() -> list[Manifest]:
    """Nothing reaches a pod of the namespace over the network but the load workers reaching a predictor
    (and a Ray cluster's pods each other). The harness's port-forward enters a pod through the kubelet, not
    the pod network, so no rule is needed for it; the workers dial out to the harness and accept nothing."""
    labels = {"app.kubernetes.io/managed-by": "servebench"}

    def policy(name: str, pods: Manifest, sources: list[Manifest]) -> Manifest:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(labels)},
                "spec": {"podSelector": pods, "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"podSelector": source} for source in sources]}] if sources else []}}

    workers = {"matchLabels": {WORKER_LABEL: WORKERS}}
    ray = {"matchExpressions": [{"key": "ray.io/cluster", "operator": "Exists"}]}
    return [policy("servebench-deny-ingress", {}, []),
            policy("servebench-predictors-from-workers",
                   {"matchExpressions": [{"key": POD_LABEL, "operator": "Exists"}]}, [workers]),
            policy("servebench-ray-cluster", ray, [ray, workers])]


def model_storage(capacity: str = "20Gi") -> list[Manifest]:
    """A read-only hostPath PersistentVolume over the node's model copies, and the claim bound to it."""
    labels = {"app.kubernetes.io/managed-by": "servebench"}
    volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": MODELS_PV, "labels": labels},
              "spec": {"capacity": {"storage": capacity}, "accessModes": ["ReadOnlyMany"],
                       "persistentVolumeReclaimPolicy": "Retain", "storageClassName": MODELS_PV,
                       "hostPath": {"path": NODE_MODELS_PATH, "type": "Directory"}}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": MODELS_PVC, "namespace": NAMESPACE, "labels": labels},
             "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": MODELS_PV, "volumeName": MODELS_PV,
                      "resources": {"requests": {"storage": capacity}}}}
    return [volume, claim]


@dataclass(frozen=True)
class Served:
    """How to reach what an InferenceService serves; also written on it as annotations."""

    protocol: str
    model_name: str
    predict_path: str
    readiness_path: str
    port: int

    def annotations(self) -> dict[str, str]:
        return {ANNOTATION + "protocol": self.protocol, ANNOTATION + "model-name": self.model_name,
                ANNOTATION + "predict-path": self.predict_path, ANNOTATION + "readiness-path": self.readiness_path,
                ANNOTATION + "container-port": str(self.port)}

    @classmethod
    def of(cls, manifest: Manifest) -> Served:
        notes = manifest["metadata"]["annotations"]
        return cls(notes[ANNOTATION + "protocol"], notes[ANNOTATION + "model-name"],
                   notes[ANNOTATION + "predict-path"], notes[ANNOTATION + "readiness-path"],
                   int(notes[ANNOTATION + "container-port"]))


def _metadata(name: str, runtime: str, model: str, served: Served) -> Manifest:
    return {"name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "servebench", ANNOTATION + "runtime": runtime,
                       ANNOTATION + "model": model},
            "annotations": {"serving.kserve.io/deploymentMode": DEPLOYMENT_MODE, **served.annotations()}}


def image_uid(layout: ImageLayout, runtime: RuntimeSpec) -> int:
    """The image's own numeric user: Kubernetes cannot check runAsNonRoot against a user name, and the
    restricted profile admits no root."""
    if not layout.uid:
        raise BenchError(f"{runtime.name}: its Dockerfile creates no non-root user with a numeric uid",
                         hint="add `useradd --uid 1000 ...` and `USER` to the Dockerfile: pods run under "
                              "Kubernetes' restricted profile")
    return layout.uid




def predictor_container(runtime: RuntimeSpec, model_name: str, image: str, layout: ImageLayout, resources: Resources,
                        model_uri: str, host_network_ports: bool = False) -> tuple[Manifest, Served]:
    """The custom predictor container: runtime.yaml's command as command + args, its env, one port.

    In a pod every port is the server's own: the HTTP port is the image's EXPOSE port and free_port_N
    become the ports after it. host_network_ports renders for a container sharing a host's network (the
    contract tests): then every port is a free one on that host.
    """
    port = layout.port
    values = layout.values("0.0.0.0", port)  # kubelet probes the pod IP, so the server must bind it
    if host_network_ports:
        port = free_port()
        values["port"] = str(port)
    else:
        values.update({f"free_port_{n}": str(port + n) for n in range(1, 10)})
    launch = render_launch(runtime, model_name, values)
    env = {**thread_env(int(float(resources.cpu))), **launch.env, "STORAGE_URI": model_uri}
    served = Served(runtime.protocol, model_name, launch.endpoint.predict_path, launch.endpoint.readiness_path, port)
    container = {
        "name": PREDICTOR_CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
        "command": launch.command[:1], "args": launch.command[1:],
        "env": [{"name": key, "value": value} for key, value in env.items()],
        "ports": [{"containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": served.readiness_path, "port": port},
                           "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3},
        "resources": resources.as_k8s(), "securityContext": container_context(image_uid(layout, runtime)),
        "volumeMounts": scratch_mounts(layout.writable),
    }
    return container, served


def inference_service(name: str, runtime: RuntimeSpec, model_name: str, container: Manifest,
                      served: Served) -> Manifest:
    """One InferenceService, Standard (raw Deployment) mode, one replica, a custom predictor container."""
    return hardened({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                     "metadata": _metadata(name, runtime.name, model_name, served),
                     "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "containers": [container]}}},
                    container["securityContext"]["runAsUser"])


def stock_inference_service(name: str, variant: str, stock: KServeStock, model_name: str, image: str | None,
                            layout: ImageLayout, resources: Resources, model_uri: str) -> Manifest:
    """The same model on KServe's own ClusterServingRuntime (runtime.yaml's kserve.stock): KServe chooses
    the command, ports and env, and serves the model under the InferenceService's name.

    image: our runtime image (its library pins match the model's), or None for the image the
    ClusterServingRuntime names (its library versions may not load the model).
    """
    paths = {"model_name": name}
    served = Served(stock.protocol, name, render(stock.predict_path, paths), render(stock.readiness_path, paths),
                    stock.port)
    model: Manifest = {"modelFormat": {"name": stock.model_format}, "runtime": stock.cluster_runtime,
                       "protocolVersion": stock.protocol_version, "storageUri": model_uri,
                       "resources": resources.as_k8s(), "env": [{"name": key, "value": value}
                               for key, value in {**thread_env(int(float(resources.cpu))), **stock.env}.items()]}
    uid = layout.uid or 1000  # KServe's own server images run as 1000 too
    model["securityContext"] = container_context(uid)
    if image is not None:
        model.update(image=image, imagePullPolicy="IfNotPresent", volumeMounts=scratch_mounts(layout.writable))
    else:  # where the image KServe names writes is not known here: its root stays writable
        model["securityContext"]["readOnlyRootFilesystem"] = False
    return hardened({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                     "metadata": _metadata(name, variant, model_name, served),
                     "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "model": model}}}, uid)


WORKERS = "servebench-workers"
WORKER_TOKEN_SECRET = "servebench-worker-token"  # the run's worker token, for the worker pods
WORKER_LABEL = "app.kubernetes.io/name"  # with the value WORKERS: how the reaper finds a dead harness's workers
# each worker pod: one Locust worker process, which uses one core (its users are gevent greenlets)
WORKER_RESOURCES = Resources("1", "1Gi")
WORKER_UID = 1000  # the load generator image's user (docker/locust/Dockerfile)
WORKER_IDLE_S = 3600  # a worker waits this long for the next cell; the harness deletes the pods when it ends


def predictor_service_url(name: str) -> str:
    """The predictor of InferenceService `name` inside the cluster: KServe's Service `<name>-predictor` (port 80
    to the container's port) in Standard mode, which the worker pods reach without the harness's port-forward."""
    return f"http://{name}-predictor.{NAMESPACE}.svc.cluster.local"


def worker_token_secret(token: str) -> Manifest:
    """The run's worker token as a Secret the worker pods read: applied through kubectl's stdin, never written
    to the run's manifests folder."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": WORKER_TOKEN_SECRET, "namespace": NAMESPACE,
                         "labels": {"app.kubernetes.io/managed-by": "servebench"}},
            "stringData": {"token": token}}


def workers(image: str, count: int, master: str, master_port: int, resources: Resources = WORKER_RESOURCES) -> Manifest:
    """`bench run --cluster-workers N`: N pods of the load generator's image, each running `bench worker`
    (python -m bench.load.worker) against the harness's Locust master, which hands them each cell's plan with the
    predictor's in-cluster URL and gathers their raw samples over Locust's messages."""
    labels = {"app.kubernetes.io/managed-by": "servebench", WORKER_LABEL: WORKERS}
    container = {"name": "worker", "image": image, "imagePullPolicy": "IfNotPresent",
                 "command": ["python", "-m", "bench.load.worker"],
                 "args": ["--master", f"{master}:{master_port}", "--idle-timeout", str(WORKER_IDLE_S)],
                 "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                         {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": WORKER_TOKEN_SECRET,
                                                                            "key": "token"}}}],
                 "resources": resources.as_k8s(), "volumeMounts": scratch_mounts(("/tmp",))}
    return hardened({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": WORKERS, "namespace": NAMESPACE, "labels": dict(labels)},
            "spec": {"replicas": count, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 5}}}},
                    WORKER_UID)
