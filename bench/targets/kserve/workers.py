"""`bench run --target kserve --cluster-workers N`: the load from N worker pods inside the cluster.

The pods run the load generator's image (docker/locust: Locust, servebench's locustfile and `bench worker`, the
same image docker-compose.yml uses), loaded onto the node with `kind load`, as one Deployment per run. Each pod
runs `python -m bench.load.worker` against the harness's own Locust master, which listens on kind's Docker
network gateway (what a pod reaches the host at) and hands each cell's plan with the predictor's in-cluster
Service URL; the samples come back over Locust's messages, as from any remote worker. The Deployment is
owned (bench.targets.owned) from apply to delete and carries owner labels, so a dead harness's pods are reaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.targets.kserve import cluster, manifests
from bench.targets.kserve.cluster import kubectl
from bench.targets.kserve.manifests import NAMESPACE
from bench.targets.kserve.reaping import label_with_owner
from bench.targets.kserve.runner import Runner
from bench.targets.kserve.validate import dump, validate
from bench.targets.owned import OWNED

if TYPE_CHECKING:
    from bench.load.plan import RemoteWorkers

ROLLOUT_TIMEOUT_S = 600  # the image is on the node already; this covers scheduling


@dataclass(eq=False)
class WorkerPods:
    """The worker pods' Deployment while it exists: owned from apply to delete, so Ctrl-C or exit removes it."""

    runner: Runner

    def stop(self) -> None:
        OWNED.discard(self)
        self.runner.run(*kubectl("delete", "deployment", manifests.WORKERS, "--namespace", NAMESPACE,
                                 "--ignore-not-found", "--wait=false"), check=False, timeout=120)
        self.runner.run(*kubectl("delete", "secret", manifests.WORKER_TOKEN_SECRET, "--namespace", NAMESPACE,
                                 "--ignore-not-found", "--wait=false"), check=False, timeout=120)


def start_worker_pods(runner: Runner, workers: RemoteWorkers, base_image: str, offline: bool,
                      log_dir: Path) -> WorkerPods:
    """Build (or reuse) the load generator's image, load it onto the node, apply the Deployment and wait for
    its rollout, so that each cell's wait for its workers is only their joining."""
    from bench.provision.images import ensure_image, planned_tag
    from bench.targets.compose import locust_image_source

    source = locust_image_source()
    if runner.dry_run:
        tag = planned_tag(source, base_image, offline)
    else:
        tag = ensure_image(source, base_image, offline, log_dir / "load-generator-image.log").tag
    runner.run("kind", "load", "docker-image", tag, "--name", cluster.CLUSTER, timeout=1800)
    manifest = manifests.workers(tag, workers.count, workers.bind, workers.port)
    validate([manifest], "worker Deployment")
    label_with_owner(manifest)
    manifest_dir = log_dir.parent / "manifests"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    path = manifest_dir / "workers.yaml"
    path.write_text(dump([manifest]))
    pods = WorkerPods(runner)
    OWNED.add(pods)
    secret = manifests.worker_token_secret(workers.token)
    label_with_owner(secret)
    runner.run(*kubectl("apply", "-f", "-"), stdin=dump([secret]))  # the token: not on disk, not in argv
    runner.run(*kubectl("apply", "-f", str(path)))
    runner.run(*kubectl("rollout", "status", f"deployment/{manifests.WORKERS}", "--namespace", NAMESPACE,
                        f"--timeout={ROLLOUT_TIMEOUT_S}s"), timeout=ROLLOUT_TIMEOUT_S + 60)
    runner.note(f"each cell's Locust master listens on {workers.bind}:{workers.port} (unless --master-bind says "
                f"otherwise, the gateway of Docker network '{cluster.KIND_NETWORK}', read when the cluster exists; "
                f"a dry run shows {cluster.GATEWAY_IN_DRY_RUN}); the {workers.count} worker pod(s) join it and send "
                "to the predictor's in-cluster Service")
    return pods
