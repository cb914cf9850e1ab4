"""Every version the kind + KServe set-up pins, in one place (docs/guide.md's table repeats them; a test keeps
the two in step).

KServe is pinned to the release whose InferenceService CRD the manifests are validated against
(tests/data/kserve/, copied after tag v0.20.0-rc0). The node image is pinned by digest, as kind's release
notes ask: a node image is built for one kind release.
"""

from __future__ import annotations

KIND = "v0.31.0"
NODE_IMAGE = "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
KUBERNETES = "1.35.0"  # the node image's version: what core objects are validated against
KUBECTL = "v1.35.0"  # within one minor version of the cluster
HELM = "v3.16.3"
CERT_MANAGER = "v1.17.0"  # chart jetstack/cert-manager
KSERVE = "v0.20.0"  # charts oci://ghcr.io/kserve/charts/kserve-crd and kserve-resources
METRICS_SERVER_CHART = "3.12.2"  # chart metrics-server/metrics-server (metrics-server v0.7.2)

ALL = {"kind": KIND, "node image": NODE_IMAGE, "kubectl": KUBECTL, "helm": HELM, "cert-manager": CERT_MANAGER,
       "KServe": KSERVE, "metrics-server chart": METRICS_SERVER_CHART}
