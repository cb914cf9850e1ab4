"""Kubernetes for the KServe target: pinned versions, the kind cluster, rendered manifests, their validation."""
