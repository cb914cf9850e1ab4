"""InferenceServices a dead harness left on the cluster, found by their owner labels, and deleted.

Each InferenceService the KServe target applies carries its harness's pid, start time and host as labels
(the Docker target labels its containers the same way); a SIGKILLed harness deletes nothing, so the next
KServe run lists servebench's InferenceServices and deletes those whose harness ran on this host and runs
no more. Its port-forwards were local processes: bench.targets.orphans reaps those.
"""

from __future__ import annotations

import json

from bench.targets.kserve.cluster import kubectl
from bench.targets.kserve.manifests import ANNOTATION, NAMESPACE, Manifest
from bench.targets.kserve.runner import Runner
from bench.targets.orphans import Owner

OWNER_KEYS = (ANNOTATION + "owner-pid", ANNOTATION + "owner-started", ANNOTATION + "owner-host")
MANAGED = "app.kubernetes.io/managed-by=servebench"


def label_with_owner(isvc: Manifest) -> None:
    """Mark an InferenceService as this harness's, just before it is applied."""
    isvc["metadata"].setdefault("labels", {}).update(Owner.me().labels(*OWNER_KEYS))


def reap_inference_services(runner: Runner) -> list[str]:
    """Delete the InferenceServices of harnesses on this host that no longer run; a line per deletion. A
    cluster that cannot be listed reaps nothing (the run itself then says what is wrong)."""
    listed = runner.run(*kubectl("get", "inferenceservice", "--namespace", NAMESPACE, "--selector", MANAGED,
                                 "--output", "json"), probe=True, timeout=60)
    if not listed.ok:
        return []
    try:
        items = json.loads(listed.stdout).get("items", [])
    except (ValueError, AttributeError):
        return []
    removed = []
    for item in items:
        metadata = item.get("metadata", {}) if isinstance(item, dict) else {}
        labels = metadata.get("labels") or {}
        owner = Owner.parse(*(str(labels.get(key, "")) for key in OWNER_KEYS))
        name = str(metadata.get("name", ""))
        if name and owner is not None and owner.left_it_behind():
            runner.run(*kubectl("delete", "inferenceservice", name, "--namespace", NAMESPACE, "--wait=false"),
                       check=False, timeout=120)
            removed.append(f"InferenceService {name} (its harness, pid {owner.pid}, no longer runs)")
    return removed
