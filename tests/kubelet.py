"""A rendered pod's container run under Docker as a kubelet would run it, for the contract tests (kind cannot
run here): its command, args, env, limits and what the kubelet enforces of its security context."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence
from typing import Any

from bench.targets.kserve.pod_security import SCRATCH_PREFIX


def security_flags(container: dict[str, Any]) -> list[str]:
    """The user, dropped capabilities, no privilege escalation and a read-only root with an emptyDir behind
    each scratch mount (a tmpfs here, owned by the pod's user as an emptyDir is writable by it: docker alone
    would copy the image folder's owner onto it)."""
    security = container["securityContext"]
    flags = ["--user", str(security["runAsUser"])]
    flags += [f"--cap-drop={capability}" for capability in security["capabilities"]["drop"]]
    if security["allowPrivilegeEscalation"] is False:
        flags += ["--security-opt", "no-new-privileges"]
    if security.get("readOnlyRootFilesystem"):
        flags += ["--read-only"]
    for mount in container.get("volumeMounts", []):
        if mount["name"].startswith(SCRATCH_PREFIX):
            flags += ["--tmpfs", f"{mount['mountPath']}:rw,uid={security['runAsUser']}"]
    return flags


def run_like_kubelet(container: dict[str, Any], prefix: str, label: str, flags: Sequence[str], *,
                     entrypoint: bool = True, secrets_data: dict[str, dict[str, str]] | None = None) -> str:
    """`docker run -d` of a Kubernetes container spec: command -> entrypoint (unless entrypoint is False: the
    image's own), args -> arguments, env, limits, security_flags, plus the test's own `flags` (its network,
    mounts, host entries). A secretKeyRef's value comes from secrets_data (the Secret's stringData by name)
    through docker's own environment, not its argv. The container's name, `prefix` and a random tail."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    limits = container["resources"]["limits"]
    command = ["docker", "run", "-d", "--name", name, "--label", label, *flags, "--cpus", limits["cpu"],
               "--memory", limits["memory"].replace("Gi", "g"), *security_flags(container)]
    from_secrets = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            from_secrets[item["name"]] = (secrets_data or {})[ref["name"]][ref["key"]]
            command += ["-e", item["name"]]  # docker takes the value from its own environment
        else:
            command += ["-e", f"{item['name']}={item['value']}"]
    if entrypoint and container.get("command"):
        command += ["--entrypoint", container["command"][0]]
    command += [container["image"], *container.get("command", [])[1:], *container.get("args", [])]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600,
                   env={**os.environ, **from_secrets})
    return name
