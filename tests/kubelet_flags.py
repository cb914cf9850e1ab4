"""What a kubelet enforces of a container spec, as `docker run` flags: for tests that run a rendered pod's
container under Docker (kind cannot run here)."""

from __future__ import annotations

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
