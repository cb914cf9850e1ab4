"""Kubernetes' restricted Pod Security Standard, checked offline on every pod the harness renders, and the
security context that meets it.

The namespace carries `pod-security.kubernetes.io/enforce: restricted`, so a real cluster refuses a pod
that breaks a rule; checking here first turns that refusal (seen only as a ReplicaSet event, minutes into a
run) into an error before anything is applied. The rules are those of the Pod Security Standards page
(kubernetes.io/docs/concepts/security/pod-security-standards, profile "restricted", which includes
"baseline"): each control below names the field it reads.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from bench.targets.confinement import SCRATCH_MIB

Manifest = dict[str, Any]

LEVEL_LABELS = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}
ALLOWED_ADDED_CAPABILITIES = {"NET_BIND_SERVICE"}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
ALLOWED_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def container_context(uid: int) -> Manifest:
    """A container's securityContext that meets the restricted profile (with the pod's, below) and keeps its
    root filesystem read-only: the server writes only to the scratch volumes mounted over it."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
            "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def pod_context(uid: int) -> Manifest:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


SCRATCH_PREFIX = "scratch-"  # a volumeMount named so is an emptyDir that hardened() provides


def scratch_mounts(folders: tuple[str, ...]) -> list[Manifest]:
    """volumeMounts for the folders a server writes to, over its read-only root (emptyDir volumes)."""
    return [{"name": f"{SCRATCH_PREFIX}{n}", "mountPath": folder} for n, folder in enumerate(folders)]


Pod = tuple[str, Manifest, list[tuple[str, Manifest]]]  # where, the pod spec itself, (where, container)s


def _pod(where: str, spec: Manifest, extra: tuple[Manifest, ...] = ()) -> Pod:
    """A pod spec and its containers; anything malformed is left to the schema check to name."""
    containers = [(f"{group}.{container.get('name', n)}", container) for group in CONTAINER_LISTS
                  for n, container in enumerate(spec.get(group) or []) if isinstance(container, dict)]
    containers += [(f"model.{container.get('name', 'kserve-container')}", container) for container in extra]
    return where, spec, containers


def pods(manifest: Manifest) -> list[Pod]:
    """Every pod a manifest makes. An InferenceService's predictor is a pod spec whose `model` (the container
    KServe builds from a serving runtime) counts as one of its containers."""
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    found: list[Pod] = []
    if kind == "Pod":
        found.append(_pod("spec", spec))
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        found.append(_pod("spec.template.spec", spec.setdefault("template", {}).setdefault("spec", {})))
    elif kind == "InferenceService":
        predictor = spec.setdefault("predictor", {})
        found.append(_pod("spec.predictor", predictor, tuple(m for m in [predictor.get("model")] if m)))
    elif kind == "RayService":
        cluster = spec.get("rayClusterConfig") or {}
        groups = [("headGroupSpec", cluster.get("headGroupSpec") or {})]
        groups += [(f"workerGroupSpecs.{n}", group) for n, group in enumerate(cluster.get("workerGroupSpecs") or [])]
        found += [_pod(f"spec.rayClusterConfig.{where}.template.spec",
                       group.setdefault("template", {}).setdefault("spec", {})) for where, group in groups]
    elif kind == "SeldonDeployment":
        found += [_pod(f"spec.predictors.{p}.componentSpecs.{c}.spec", component.setdefault("spec", {}))
                  for p, predictor in enumerate(spec.get("predictors") or [])
                  for c, component in enumerate(predictor.get("componentSpecs") or [])]
    return found


def hardened(manifest: Manifest, uid: int) -> Manifest:
    """A copy of a manifest whose every pod runs as `uid` under the restricted profile, without the API
    token (nothing here talks to the API server), with an emptyDir behind each scratch mount."""
    manifest = copy.deepcopy(manifest)
    for _, pod, containers in pods(manifest):
        pod["automountServiceAccountToken"] = False
        pod["securityContext"] = {**pod_context(uid), **(pod.get("securityContext") or {})}
        volumes = pod.setdefault("volumes", [])
        for _, container in containers:
            container["securityContext"] = {**container_context(uid), **(container.get("securityContext") or {})}
            for mount in container.get("volumeMounts") or []:
                name = mount["name"]
                if name.startswith(SCRATCH_PREFIX) and all(volume["name"] != name for volume in volumes):
                    volumes.append({"name": name, "emptyDir": {"sizeLimit": f"{SCRATCH_MIB}Mi"}})
        if not volumes:
            del pod["volumes"]
    return manifest


def _pod_problems(pod: Manifest, containers: list[tuple[str, Manifest]]) -> Iterator[str]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"{field}: host namespaces are not allowed"
    pod_security = pod.get("securityContext") or {}
    if (pod_security.get("windowsOptions") or {}).get("hostProcess"):
        yield "securityContext.windowsOptions.hostProcess: not allowed"
    for volume in pod.get("volumes") or []:
        types = set(volume) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            yield f"volumes.{volume.get('name')}: {', '.join(sorted(types - ALLOWED_VOLUMES))} volumes are not allowed"
    for sysctl in pod_security.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl"
    if not containers:
        yield "no containers"
    for where, container in containers:
        yield from (f"{where}.{problem}" for problem in _container_problems(container, pod_security))


def _container_problems(container: Manifest, pod_security: Manifest) -> Iterator[str]:
    security = container.get("securityContext") or {}

    def either(field: str) -> Any:
        """A container's own setting, else the pod's (Kubernetes' precedence)."""
        return security[field] if field in security else pod_security.get(field)

    if security.get("privileged"):
        yield "securityContext.privileged: not allowed"
    if security.get("allowPrivilegeEscalation") is not False:
        yield "securityContext.allowPrivilegeEscalation: must be false"
    capabilities = security.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        yield "securityContext.capabilities.drop: must include ALL"
    added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
    if added:
        yield f"securityContext.capabilities.add: {', '.join(sorted(added))} not allowed"
    if either("runAsNonRoot") is not True:
        yield "securityContext.runAsNonRoot: must be true (on the container or the pod)"
    if either("runAsUser") == 0:
        yield "securityContext.runAsUser: must not be 0"
    seccomp = (either("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP:
        yield f"securityContext.seccompProfile.type: must be RuntimeDefault or Localhost, not {seccomp}"
    if security.get("procMount", "Default") != "Default":
        yield "securityContext.procMount: must be Default"
    selinux = either("seLinuxOptions") or {}
    if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        yield "securityContext.seLinuxOptions: not allowed"
    if (either("appArmorProfile") or {}).get("type") == "Unconfined":
        yield "securityContext.appArmorProfile: Unconfined is not allowed"
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            yield f"ports: hostPort {port['hostPort']} is not allowed"


def problems(manifest: Manifest) -> list[str]:
    """Every break of the restricted profile in the pods a manifest makes ('path: problem'; empty when none)."""
    return [f"{where}.{problem}" for where, pod, containers in pods(copy.deepcopy(manifest))
            for problem in _pod_problems(pod, containers)]
