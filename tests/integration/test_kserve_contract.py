"""The container contract behind each InferenceService, exercised under Docker (kind cannot run here).

For each runtime the predictor container is taken from the rendered InferenceService and its image is
run with exactly that command (as the entrypoint), args, env, user and resources, the model mounted
read-only where KServe's storage initializer puts it (/mnt/models); then it is probed as KServe does:
the readiness probe's HTTP path until 200, then a predict request in the protocol the manifest declares,
with the golden rows, compared with the reference probabilities.

Ports: a pod has its own network, so the manifest fixes the port (8080, the Dockerfile's EXPOSE) and the
auxiliary ports after it. These containers share the host's network (the daemon has no bridge), where a
fixed 8080 could collide with anything else on a CI machine, so the manifest is rendered with
`host_network_ports=True`: the same renderer, every port a free one, consistently in args, env, the
declared containerPort and the probe (unit tests pin the in-pod ports to 8080...). The stock-runtime
variant keeps its fixed ports (KServe's runtime fixes them), and is skipped if they are taken.

Needs a Docker daemon and the runtime images (built offline if missing, as `make test` does first);
skips without a daemon unless SERVEBENCH_REQUIRE_DOCKER is set.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker_daemon import require_docker
from kubelet import run_like_kubelet

from bench.config import available_runtimes, load_runtime
from bench.measure.parity import check_parity
from bench.models.registry import LocalModel
from bench.provision.containers import inspect
from bench.provision.image_layout import image_layout
from bench.targets.base import Endpoint, wait_until_ready
from bench.targets.docker import DockerTarget
from bench.targets.kserve import manifests
from bench.targets.kserve.validate import problems

pytestmark = [pytest.mark.integration, pytest.mark.docker]

BASE_IMAGE = os.environ.get("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm")
MLSERVER_RUNTIME = Path(__file__).parents[1] / "data" / "kserve" / "kserve-mlserver.yaml"
LABEL = "servebench.test=kserve-contract"
RESOURCES = manifests.Resources("1", "2Gi")


@pytest.fixture(scope="module", autouse=True)
def daemon() -> None:
    require_docker()


@pytest.fixture(scope="module")
def images() -> DockerTarget:
    return DockerTarget(base_image=BASE_IMAGE, offline=True)


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    yield
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert not left, f"containers left behind: {left}"


def run_predictor(container: dict[str, Any], model: LocalModel, entrypoint: bool = True) -> str:
    """The predictor container as a kubelet runs it, on the host's network, with the model read-only at
    /mnt/models (KServe's mount point for a storageUri)."""
    return run_like_kubelet(container, "servebench-contract", LABEL,
                            ["--network", "host", "-v", f"{model.model_dir}:/mnt/models:ro"], entrypoint=entrypoint)


def exited(name: str) -> str | None:
    state = (inspect("container", name) or {}).get("State", {})
    return None if state.get("Running") else f"container exited with code {state.get('ExitCode')}"


def probe_like_kserve(name: str, served: manifests.Served, model: LocalModel, timeout_s: float = 180) -> None:
    base = f"http://127.0.0.1:{served.port}"
    endpoint = Endpoint(base, served.predict_path, served.readiness_path, served.protocol, model.name)
    try:
        wait_until_ready(endpoint.readiness_url, timeout_s, lambda: exited(name), interval_s=0.5)
    except Exception:
        logs = subprocess.run(["docker", "logs", "--tail", "30", name], capture_output=True, text=True)
        pytest.fail(f"{name} never ready:\n{logs.stdout}{logs.stderr}")
    parity = check_parity(endpoint, model)
    assert parity.ok, parity.error
    assert parity.rows == len(model.golden_inputs) + 1


@pytest.mark.parametrize("runtime_name", available_runtimes())
def test_the_predictor_container_serves_the_golden_rows(runtime_name: str, images: DockerTarget,
                                                         models: dict[str, LocalModel], tmp_path: Path) -> None:
    runtime = load_runtime(runtime_name)
    model = models["iris-logreg"]
    tag = images.image_for(runtime, tmp_path).tag
    container, served = manifests.predictor_container(runtime, model.name, tag, image_layout(runtime), RESOURCES,
                                                      "pvc://servebench-models/iris-logreg/x/model",
                                                      host_network_ports=True)
    isvc = manifests.inference_service(f"{runtime_name}-iris-logreg", runtime, model.name, container, served)
    assert problems(isvc) == []
    spec = yaml.safe_load(yaml.safe_dump(isvc))["spec"]["predictor"]["containers"][0]  # as kubectl would send it
    assert spec["ports"][0]["containerPort"] == served.port == spec["readinessProbe"]["httpGet"]["port"]
    name = run_predictor(spec, model)
    try:
        probe_like_kserve(name, manifests.Served.of(isvc), model)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def test_the_stock_mlserver_runtime_with_our_image(images: DockerTarget, models: dict[str, LocalModel],
                                                    tmp_path: Path) -> None:
    """What the kserve-mlserver ClusterServingRuntime and KServe's webhook make of the stock variant: the
    runtime's container env ({{.Labels.modelClass}} filled as KServe does for modelFormat mlflow), the env
    KServe adds for a storageUri (MLSERVER_MODEL_NAME = the InferenceService's name, MLSERVER_MODEL_URI =
    /mnt/models), the InferenceService's own env, and the image's default command (the runtime names none)."""
    runtime = load_runtime("mlserver")
    stock = runtime.kserve.stock
    assert stock is not None
    variant = manifests.stock_variant(runtime)
    model = models["iris-logreg"]
    layout = image_layout(runtime)
    tag = images.image_for(runtime, tmp_path).tag
    name = manifests.object_name(variant, model.name)
    isvc = manifests.stock_inference_service(name, variant, stock, model.name, tag, layout, RESOURCES,
                                             "pvc://p/iris-logreg")
    assert problems(isvc) == []
    cluster_runtime = yaml.safe_load(MLSERVER_RUNTIME.read_text())
    assert cluster_runtime["metadata"]["name"] == stock.cluster_runtime
    assert {"name": stock.model_format, "version": "2", "autoSelect": True, "priority": 1} in \
        cluster_runtime["spec"]["supportedModelFormats"]
    assert stock.protocol_version in cluster_runtime["spec"]["protocolVersions"]
    runtime_container = cluster_runtime["spec"]["containers"][0]
    assert "command" not in runtime_container and "args" not in runtime_container
    env = [{"name": item["name"], "value": item["value"].replace("{{.Labels.modelClass}}", stock.model_class)}
           for item in runtime_container["env"]]
    env += [{"name": "MLSERVER_MODEL_NAME", "value": name}, {"name": "MLSERVER_MODEL_URI", "value": "/mnt/models"}]
    model_spec = isvc["spec"]["predictor"]["model"]
    container = {"image": model_spec["image"], "env": env + model_spec["env"], "resources": model_spec["resources"],
                 "securityContext": model_spec["securityContext"], "volumeMounts": model_spec["volumeMounts"]}
    ports = {int(item["value"]) for item in env if item["name"].endswith("_PORT")}
    if not _ports_free(*ports, 8082):  # 8082: the image's own MLSERVER_METRICS_PORT, which the runtime keeps
        pytest.skip(f"the stock runtime's fixed ports {sorted(ports)} (or 8082) are taken on this host")
    served = manifests.Served.of(isvc)
    assert served.port == int(next(item["value"] for item in env if item["name"] == "MLSERVER_HTTP_PORT"))
    container_name = run_predictor(container, model, entrypoint=False)
    try:
        probe_like_kserve(container_name, served, model)
    finally:
        subprocess.run(["docker", "rm", "-f", container_name], capture_output=True, check=False)
