"""Kubernetes' restricted Pod Security profile, checked offline: what it refuses, and that every pod the
KServe target renders (predictors, stock variants, platform objects, load workers) meets it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bench.config import available_runtimes, load_runtime
from bench.provision.image_layout import image_layout
from bench.targets.kserve import manifests
from bench.targets.kserve.platform import render_platform
from bench.targets.kserve.pod_security import LEVEL_LABELS, container_context, hardened, pod_context, pods, problems

RESOURCES = manifests.Resources("1", "2Gi")


def compliant_pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"securityContext": pod_context(1000), "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "i", "securityContext": container_context(1000)}]}}


def breaking(change: str) -> dict[str, Any]:
    pod = compliant_pod()
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    security = container["securityContext"]
    if change == "root":
        security["runAsUser"] = 0
    elif change == "may-be-root":
        del security["runAsNonRoot"], spec["securityContext"]["runAsNonRoot"]
    elif change == "escalation":
        security["allowPrivilegeEscalation"] = True
    elif change == "capabilities-kept":
        security["capabilities"] = {}
    elif change == "sys-admin":
        security["capabilities"]["add"] = ["SYS_ADMIN"]
    elif change == "privileged":
        security["privileged"] = True
    elif change == "no-seccomp":
        del security["seccompProfile"], spec["securityContext"]["seccompProfile"]
    elif change == "unconfined":
        security["seccompProfile"] = {"type": "Unconfined"}
    elif change == "host-network":
        spec["hostNetwork"] = True
    elif change == "host-path":
        spec["volumes"] = [{"name": "v", "hostPath": {"path": "/"}}]
    elif change == "host-port":
        container["ports"] = [{"containerPort": 8080, "hostPort": 8080}]
    elif change == "unsafe-sysctl":
        spec["securityContext"]["sysctls"] = [{"name": "kernel.msgmax", "value": "1"}]
    elif change == "init-container":
        spec["initContainers"] = [{"name": "init", "image": "i"}]
    return pod


CHANGES = {"root": "runAsUser", "may-be-root": "runAsNonRoot", "escalation": "allowPrivilegeEscalation",
           "capabilities-kept": "capabilities.drop", "sys-admin": "SYS_ADMIN", "privileged": "privileged",
           "no-seccomp": "seccompProfile", "unconfined": "seccompProfile", "host-network": "hostNetwork",
           "host-path": "hostPath", "host-port": "hostPort", "unsafe-sysctl": "kernel.msgmax",
           "init-container": "initContainers.init"}


def test_a_compliant_pod_has_no_problems() -> None:
    assert problems(compliant_pod()) == []


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_break_of_the_profile_is_named(change: str) -> None:
    found = problems(breaking(change))
    assert found and any(CHANGES[change] in problem for problem in found), found


def test_the_pod_level_context_covers_its_containers() -> None:
    """runAsNonRoot and seccompProfile may be set once for the pod, as Kubernetes reads them."""
    pod = compliant_pod()
    for field in ("runAsNonRoot", "runAsUser", "seccompProfile"):
        del pod["spec"]["containers"][0]["securityContext"][field]
    assert problems(pod) == []


def test_hardened_leaves_its_input_alone_and_backs_scratch_mounts_with_empty_dirs() -> None:
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "i", "volumeMounts": [{"name": "scratch-0", "mountPath": "/tmp"}]}]}}}}
    before = copy.deepcopy(bare)
    assert problems(bare)
    safe = hardened(bare, 1000)
    assert bare == before
    assert problems(safe) == []
    pod = safe["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [{"name": "scratch-0", "emptyDir": {"sizeLimit": "1024Mi"}}]


def every_rendered_pod_manifest() -> list[tuple[str, dict[str, Any]]]:
    """What the KServe target renders for every runtime: its InferenceService, its stock variant, its
    platform object; and the load workers."""
    rendered: list[tuple[str, dict[str, Any]]] = []
    for name in available_runtimes():
        runtime = load_runtime(name)
        layout = image_layout(runtime)
        container, served = manifests.predictor_container(runtime, "iris-logreg", f"servebench/{name}:abc", layout,
                                                          RESOURCES, "pvc://servebench-models/iris-logreg")
        rendered.append((name, manifests.inference_service(f"{name}-iris-logreg", runtime, "iris-logreg",
                                                           container, served)))
        if runtime.kserve.stock is not None:
            for image in (f"servebench/{name}:abc", None):
                rendered.append((f"{name} stock, image {image}", manifests.stock_inference_service(
                    f"{name}-kserve-iris", f"{name}-kserve", runtime.kserve.stock, "iris-logreg", image, layout,
                    RESOURCES, "pvc://servebench-models/iris-logreg")))
        if runtime.platform is not None:
            values = {"model_name": "iris-logreg", "image": f"servebench/{name}:abc", "port": layout.port,
                      "model_uri": "pvc://servebench-models/iris-logreg", "models_claim": manifests.MODELS_PVC,
                      "model_path": "iris-logreg", "cpu": "1", "memory": "2Gi", "uid": layout.uid,
                      "container_name": manifests.PREDICTOR_CONTAINER}
            rendered.append((f"{name} platform", render_platform(runtime, f"{name}-iris", values, container,
                                                                               layout.uid or 0)))
    rendered.append(("workers", manifests.workers("servebench/locust:abc", 2, "172.18.0.1", 5557)))
    return rendered


def test_every_pod_the_kserve_target_renders_meets_the_restricted_profile() -> None:
    rendered = every_rendered_pod_manifest()
    kinds = {manifest["kind"] for _, manifest in rendered}
    assert {"InferenceService", "Deployment", "SeldonDeployment", "RayService"} <= kinds
    for label, manifest in rendered:
        assert problems(manifest) == [], label
        for _, pod, containers in pods(manifest):
            assert pod["automountServiceAccountToken"] is False, label
            for where, container in containers:
                security = container["securityContext"]
                assert security["runAsUser"] != 0 and security["capabilities"]["drop"] == ["ALL"], (label, where)
                if container.get("image"):  # our images: nothing written outside the scratch volumes
                    assert security["readOnlyRootFilesystem"] is True, (label, where)
                    mounted = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
                    assert "/tmp" in mounted, (label, where)


def test_the_ray_dashboard_binds_loopback_in_the_head_pod() -> None:
    runtime = load_runtime("rayserve")
    assert runtime.platform is not None
    layout = image_layout(runtime)
    container, _ = manifests.predictor_container(runtime, "m", "servebench/rayserve:abc", layout, RESOURCES,
                                                 "pvc://servebench-models/m")
    values = {"model_name": "m", "image": "i", "port": layout.port, "model_uri": "pvc://servebench-models/m",
              "models_claim": manifests.MODELS_PVC, "model_path": "m", "cpu": "1", "memory": "2Gi",
              "uid": layout.uid, "container_name": manifests.PREDICTOR_CONTAINER}
    service = render_platform(runtime, "r", values, container, layout.uid or 0)
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert head["dashboard-host"] == "127.0.0.1"


def test_the_namespace_enforces_the_profile_and_admits_only_the_workers() -> None:
    namespace = manifests.namespace()
    assert LEVEL_LABELS.items() <= namespace["metadata"]["labels"].items()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    policies = {policy["metadata"]["name"]: policy["spec"] for policy in manifests.network_policies()}
    deny = policies["servebench-deny-ingress"]
    assert deny["podSelector"] == {} and deny["ingress"] == [] and deny["policyTypes"] == ["Ingress"]
    predictors = policies["servebench-predictors-from-workers"]
    assert predictors["podSelector"]["matchExpressions"][0]["key"] == manifests.POD_LABEL
    sources = [source["podSelector"] for rule in predictors["ingress"] for source in rule["from"]]
    assert sources == [{"matchLabels": {manifests.WORKER_LABEL: manifests.WORKERS}}]
    # the worker pods carry the label the policy admits
    workers = manifests.workers("servebench/locust:abc", 1, "172.18.0.1", 5557)
    assert workers["spec"]["template"]["metadata"]["labels"][manifests.WORKER_LABEL] == manifests.WORKERS


def test_a_runtime_image_without_a_numeric_user_cannot_become_a_pod(tmp_path: Path) -> None:
    from bench.errors import BenchError
    from bench.provision.image_layout import ImageLayout

    runtime = load_runtime("fastapi")
    root = ImageLayout("/opt/venv/bin", "/app", "/mnt/models", 8080, None)
    with pytest.raises(BenchError, match="numeric uid"):
        manifests.predictor_container(runtime, "m", "i", root, RESOURCES, "pvc://servebench-models/m")
