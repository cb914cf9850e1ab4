"""InferenceServices and worker pods a dead harness left on the cluster, found by their owner labels, and deleted.

Each InferenceService and worker Deployment the KServe target applies carries its harness's pid, start time and
host as labels (the Docker target labels its containers the same way); a SIGKILLed harness deletes nothing, so
the next KServe run lists servebench's objects and deletes those whose harness ran on this host and runs no
more. Its port-forwards were local processes: bench.targets.orphans reaps those.
"""

from __future__ import annotations

import json

from bench.targets.kserve.cluster import kubectl
from bench.targets.kserve.manifests import ANNOTATION, NAMESPACE, WORKER_LABEL, WORKERS, Manifest
from bench.targets.kserve.runner import Runner
from bench.targets.orphans import Owner

OWNER_KEYS = (ANNOTATION + "owner-pid", ANNOTATION + "owner-started", ANNOTATION + "owner-host")
MANAGED = "app.kubernetes.io/managed-by=servebench"
# what is reaped: KServe copies an InferenceService's labels onto the Deployment it makes, so the worker pods'
# Deployment is selected by its own name label, and the predictors' are left to their InferenceService
REAPED = (("inferenceservice", "InferenceService", MANAGED),
          ("deployment", "Deployment", f"{MANAGED},{WORKER_LABEL}={WORKERS}"))


def label_with_owner(manifest: Manifest) -> None:
    """Mark an InferenceService or the worker Deployment as this harness's, just before it is applied."""
    manifest["metadata"].setdefault("labels", {}).update(Owner.me().labels(*OWNER_KEYS))


def reap_inference_services(runner: Runner) -> list[str]:
    """Delete the InferenceServices and worker Deployments of harnesses on this host that no longer run; a line
    per deletion. A cluster that cannot be listed reaps nothing (the run itself then says what is wrong)."""
    removed = []
    for kind, title, selector in REAPED:
        listed = runner.run(*kubectl("get", kind, "--namespace", NAMESPACE, "--selector", selector,
                                     "--output", "json"), probe=True, timeout=60)
        if not listed.ok:
            continue
        try:
            items = json.loads(listed.stdout).get("items", [])
        except (ValueError, AttributeError):
            continue
        for item in items:
            metadata = item.get("metadata", {}) if isinstance(item, dict) else {}
            labels = metadata.get("labels") or {}
            owner = Owner.parse(*(str(labels.get(key, "")) for key in OWNER_KEYS))
            name = str(metadata.get("name", ""))
            if name and owner is not None and owner.left_it_behind():
                runner.run(*kubectl("delete", kind, name, "--namespace", NAMESPACE, "--wait=false"),
                           check=False, timeout=120)
                removed.append(f"{title} {name} (its harness, pid {owner.pid}, no longer runs)")
    return removed
