"""`bench cluster up|down`: a kind cluster from the committed config, cert-manager, KServe in Standard
(raw Deployment) mode and metrics-server, at pinned versions, each step checked before it is done.

Idempotent: each step first asks whether its result is already there (the cluster, each Helm release)
and skips it if so, then waits until what it installed is ready. Every kubectl and helm command names the
kind cluster's context, so another cluster in the user's kubeconfig is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from bench.config import load_runtimes, project_root, state_dir
from bench.errors import BenchError
from bench.targets.kserve import manifests, versions
from bench.targets.kserve.runner import Runner, require_tools
from bench.targets.kserve.validate import dump, validate

CLUSTER = "servebench"
CONTEXT = f"kind-{CLUSTER}"
CONFIG_FILE = project_root() / "deploy" / "kind" / "cluster.yaml"
KSERVE_NAMESPACE = "kserve"
WAIT = "--timeout=300s"
Say = Callable[[str], None]


def kubectl(*args: str) -> list[str]:
    return ["kubectl", "--context", CONTEXT, *args]


def helm(*args: str) -> list[str]:
    return ["helm", "--kube-context", CONTEXT, *args]


KIND_NETWORK = "kind"  # the Docker network kind puts its nodes on
GATEWAY_IN_DRY_RUN = "172.18.0.1"  # Docker's usual gateway of the first user network, shown by a dry run


def kind_gateway(runner: Runner) -> str:
    """This host's address on the Docker network of kind's nodes: where the worker pods reach the harness's
    Locust master (a pod's traffic to an address outside the cluster leaves its node through this gateway).
    A dry run has no network to read and shows Docker's usual address, saying so."""
    found = runner.run("docker", "network", "inspect", KIND_NETWORK, "--format",
                       "{{range .IPAM.Config}}{{.Gateway}} {{end}}", probe=True, timeout=60)
    if runner.dry_run:
        runner.note(f"the worker pods' master address: the gateway of Docker network '{KIND_NETWORK}', read when "
                    f"the cluster exists (shown as {GATEWAY_IN_DRY_RUN}, Docker's usual one)")
        return GATEWAY_IN_DRY_RUN
    addresses = [address for address in found.stdout.split() if address.count(".") == 3]
    if not found.ok or not addresses:
        raise BenchError(f"no IPv4 gateway on Docker network '{KIND_NETWORK}', where kind's nodes reach this host "
                         f"({found.tail(1) or 'no address'})",
                         hint="run `bench cluster up` first, or give --master-bind ADDR[:PORT] that the pods reach")
    return addresses[0]


def models_root() -> Path:
    """What the kind node mounts at manifests.NODE_MODELS_PATH: every local model copy."""
    return state_dir() / "models"


def render_kind_config(out: Path) -> Path:
    """The committed config with its relative hostPath made absolute (kind needs an absolute path)."""
    config = yaml.safe_load(CONFIG_FILE.read_text())
    for node in config["nodes"]:
        for mount in node.get("extraMounts", []):
            if mount["containerPath"] == manifests.NODE_MODELS_PATH:
                mount["hostPath"] = str(models_root())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# rendered from {CONFIG_FILE} by bench cluster up\n" + yaml.safe_dump(config, sort_keys=False))
    return out


def cluster_exists(runner: Runner) -> bool:
    return CLUSTER in runner.run("kind", "get", "clusters", probe=True).stdout.split()


def _helm_release(runner: Runner, say: Say, release: str, namespace: str, chart: list[str]) -> None:
    if runner.run(*helm("status", release, "--namespace", namespace), probe=True).ok:
        say(f"{release}: already installed")
        return
    say(f"{release}: installing")
    runner.run(*helm("install", release, *chart, "--namespace", namespace, "--create-namespace", "--wait",
                     "--timeout", "10m"), timeout=900)


def namespace_manifests() -> list[manifests.Manifest]:
    """The run's namespace (restricted pods only), its model storage and its network policies."""
    return [manifests.namespace(), *manifests.model_storage(), *manifests.network_policies()]


def stock_cluster_runtimes() -> list[str]:
    """Every ClusterServingRuntime a runtime folder's kserve.stock block names: what the cluster must offer."""
    return sorted({spec.kserve.stock.cluster_runtime for spec in load_runtimes("all") if spec.kserve.stock})


def cluster_up(runner: Runner, work_dir: Path, say: Say, cluster_runtimes: Iterable[str] | None = None) -> None:
    """Create (or reuse) the cluster and everything KServe needs, then check it is ready. cluster_runtimes:
    the stock ClusterServingRuntimes to check for (default: those every runtime folder names)."""
    if not runner.dry_run:
        require_tools("docker", "kind", "kubectl", "helm")
        models_root().mkdir(parents=True, exist_ok=True)
    config = render_kind_config(work_dir / "kind-cluster.yaml")
    if cluster_exists(runner):
        say(f"kind cluster {CLUSTER}: exists")
    else:
        say(f"kind cluster {CLUSTER}: creating ({versions.NODE_IMAGE.split('@')[0]})")
        runner.run("kind", "create", "cluster", "--name", CLUSTER, "--image", versions.NODE_IMAGE,
                   "--config", str(config), "--wait", "180s", timeout=900)
    runner.run(*kubectl("wait", "--for=condition=Ready", "node", "--all", WAIT))
    _helm_release(runner, say, "cert-manager", "cert-manager",
                  ["cert-manager", "--repo", "https://charts.jetstack.io", "--version", versions.CERT_MANAGER,
                   "--set", "crds.enabled=true"])
    runner.run(*kubectl("wait", "--for=condition=Available", "deployment", "--all", "--namespace", "cert-manager",
                        WAIT))
    _helm_release(runner, say, "kserve-crd", KSERVE_NAMESPACE,
                  ["oci://ghcr.io/kserve/charts/kserve-crd", "--version", versions.KSERVE])
    _helm_release(runner, say, "kserve", KSERVE_NAMESPACE,
                  ["oci://ghcr.io/kserve/charts/kserve-resources", "--version", versions.KSERVE,
                   "--set", f"kserve.controller.deploymentMode={manifests.DEPLOYMENT_MODE}",
                   "--set", "kserve.controller.gateway.disableIngressCreation=true"])
    runner.run(*kubectl("wait", "--for=condition=Available", "deployment/kserve-controller-manager",
                        "--namespace", KSERVE_NAMESPACE, WAIT))
    runner.run(*kubectl("wait", "--for=condition=Established", "crd/inferenceservices.serving.kserve.io", WAIT))
    # metrics-server: pod CPU and memory for the results (kind's kubelets serve self-signed certificates)
    _helm_release(runner, say, "metrics-server", "kube-system",
                  ["metrics-server", "--repo", "https://kubernetes-sigs.github.io/metrics-server/", "--version",
                   versions.METRICS_SERVER_CHART, "--set", "args={--kubelet-insecure-tls}"])
    for stock in stock_cluster_runtimes() if cluster_runtimes is None else cluster_runtimes:
        if not runner.run(*kubectl("get", "clusterservingruntime", stock), probe=True).ok and not runner.dry_run:
            raise BenchError(f"KServe is installed but has no ClusterServingRuntime {stock}",
                             hint="reinstall the kserve release (bench cluster down && bench cluster up), or "
                                  "drop the kserve.stock block of the runtime.yaml that names it")
    storage = namespace_manifests()
    validate(storage, "cluster namespace")
    path = work_dir / "cluster-namespace.yaml"
    path.write_text(dump(storage))
    runner.run(*kubectl("apply", "-f", str(path)))
    runner.run(*kubectl("wait", "--for=jsonpath={.status.phase}=Bound", f"pvc/{manifests.MODELS_PVC}",
                        "--namespace", manifests.NAMESPACE, "--timeout=60s"))
    say(f"ready: context {CONTEXT}, namespace {manifests.NAMESPACE}, models from {models_root()}")


def cluster_down(runner: Runner, say: Say) -> None:
    """Delete the kind cluster (and with it everything in it); nothing to do when it is not there."""
    if not runner.dry_run:
        require_tools("kind")
    if not cluster_exists(runner) and not runner.dry_run:
        say(f"kind cluster {CLUSTER}: not there, nothing to do")
        return
    say(f"kind cluster {CLUSTER}: deleting")
    runner.run("kind", "delete", "cluster", "--name", CLUSTER, timeout=600)


def require_cluster(runner: Runner) -> None:
    """Before a real run: the cluster and KServe's CRD must be there (one-line error otherwise)."""
    if runner.dry_run:
        return
    require_tools("docker", "kind", "kubectl")
    if not cluster_exists(runner):
        raise BenchError(f"no kind cluster '{CLUSTER}'", hint="bench cluster up")
    if not runner.run(*kubectl("get", "crd", "inferenceservices.serving.kserve.io"), probe=True).ok:
        raise BenchError(f"KServe is not installed in kind cluster '{CLUSTER}'", hint="bench cluster up")
