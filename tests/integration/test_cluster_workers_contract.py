"""The container contract of `bench run --target kserve --cluster-workers N`, exercised without a cluster.

kind cannot run here, so the worker pod is reproduced as closely as a kubelet would run it: the load
generator's image (built as the KServe target builds it), started with exactly the rendered Deployment's
command, args, env, user and limits, in a network of its own (`--network none`, then a veth into a bridge that
stands for the node's network: this host at 10.213.X.1, the pod at .2), with the predictor's in-cluster
Service name resolving to the server as the cluster's DNS would. The harness is the master on the bridge
address and reaches the server on 127.0.0.1 (as through the KServe target's port-forward), where the pod would
reach only itself; the run's plan sends the worker to the Service name (`--worker-url`), which only the
container resolves: a valid cell means the worker sent every request to the in-cluster name, and its samples
came back over Locust's messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from docker_daemon import require_docker
from kubelet import run_like_kubelet

from bench.load.worker_auth import TOKEN_ENV, new_token
from bench.models.registry import LocalModel
from bench.ports import free_port
from bench.provision.images import ensure_image
from bench.results.store import load_results
from bench.targets.compose import locust_image_source
from bench.targets.kserve import manifests

pytestmark = [pytest.mark.integration, pytest.mark.docker]

BASE_IMAGE = os.environ.get("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm")
FAKE_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "fake-runtime"
BENCH = [sys.executable, "-m", "bench.cli"]
LABEL = "servebench.test=cluster-workers"
SERVICE = "fastapi-iris-logreg"  # the InferenceService whose predictor Service the worker is sent to


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def bridge() -> Iterator[tuple[str, str]]:
    """A bridge with this host at 10.213.X.1/24, standing for the node's network; (its name, the address)."""
    require_docker()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = os.getpid() % 10_000
    octet = 1 + (os.getpid() + 97) % 250
    name = f"sb{tag}cw"
    try:
        _ip("link", "add", name, "type", "bridge")
        _ip("addr", "add", f"10.213.{octet}.1/24", "dev", name)
        _ip("link", "set", name, "up")
        yield name, f"10.213.{octet}.1"
    finally:
        subprocess.run(["ip", "link", "del", f"{name}v"], capture_output=True)
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def plug_in(container: str, bridge: str, address: str) -> None:
    """A veth from the bridge into the container's network namespace, at `address`/24."""
    pid = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], check=True,
                         capture_output=True, text=True).stdout.strip()
    _ip("link", "add", f"{bridge}v", "type", "veth", "peer", "name", f"{bridge}p")
    _ip("link", "set", f"{bridge}p", "netns", pid)
    _ip("link", "set", f"{bridge}v", "master", bridge, "up")
    inside = ["nsenter", "--net=/proc/" + pid + "/ns/net", "ip"]
    for args in (["addr", "add", f"{address}/24", "dev", f"{bridge}p"], ["link", "set", f"{bridge}p", "up"]):
        subprocess.run([*inside, *args], check=True, capture_output=True, timeout=10)


def wait_ready(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, "bench serve did not come up"
        time.sleep(0.2)


def test_a_worker_pod_serves_a_cell_against_the_predictors_in_cluster_name(
        tmp_path: Path, bridge: tuple[str, str], models: dict[str, LocalModel]) -> None:
    bridge_name, host_ip = bridge
    pod_ip = host_ip.rsplit(".", 1)[0] + ".2"
    image = ensure_image(locust_image_source(), BASE_IMAGE, True, tmp_path / "image.log").tag
    master_port, server_port = free_port(), free_port()
    workers = manifests.workers(image, 1, host_ip, master_port)
    container_spec = workers["spec"]["template"]["spec"]["containers"][0]
    token = new_token()
    secret = manifests.worker_token_secret(token)  # what the KServe target applies through kubectl's stdin
    env = {**os.environ, "SERVEBENCH_HOME": str(tmp_path / "home"), "COLUMNS": "200", TOKEN_ENV: token}
    # every interface: the harness on loopback, the pod through the bridge
    server = subprocess.Popen([*BENCH, "serve", "--runtime", str(FAKE_RUNTIME), "--model", "iris-logreg", "--host",
                               "0.0.0.0", "--port", str(server_port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True, env=env)
    container = None
    try:
        wait_ready(f"http://{host_ip}:{server_port}/ready", server)
        service = manifests.predictor_service_url(SERVICE).removeprefix("http://")
        # no network yet (plug_in gives it one), and the in-cluster Service name as the cluster's DNS would
        container = run_like_kubelet(container_spec, "servebench-worker", LABEL,
                                     ["--network", "none", "--hostname", "servebench-workers-7d9f-abcde",
                                      "--add-host", f"{service}:{host_ip}"],
                                     secrets_data={secret["metadata"]["name"]: secret["stringData"]})
        plug_in(container, bridge_name, pod_ip)
        scenario = tmp_path / "pod.yaml"
        scenario.write_text('{"name": "pod", "loop": "open", "arrival": "poisson", "rate": 100, "warmup_s": 2, '
                            '"duration_s": 6, "slo": {"percentile": "p99", "ms": 500}, "min_requests": 100}')
        run = subprocess.run(
            [*BENCH, "run", "--target", "url", "--url", f"http://127.0.0.1:{server_port}/predict", "--protocol",
             "kserve-v1", "--name", "pod-load", "--worker-url", f"http://{service}:{server_port}",
             "--expect-workers", "1", "--master-bind", f"{host_ip}:{master_port}", "--model", "iris-logreg",
             "--scenario", str(scenario), "--length", "smoke", "--no-mlflow", "--out", str(tmp_path / "run")],
            capture_output=True, text=True, timeout=240, env=env)
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stdout
        assert run.returncode == 0, run.stdout[-3000:] + logs
        (cell,) = load_results(tmp_path / "run").cells
        assert cell.validity.valid, (cell.validity, logs)
        assert cell.generator is not None
        (worker,) = cell.generator.workers
        assert worker.host == "servebench-workers-7d9f-abcde" and worker.address == pod_ip and worker.finished
        assert cell.counts.scheduled == cell.counts.sent + (cell.counts.dropped or 0) > 0
        assert cell.counts.failed == 0  # every request reached the server by the name only the pod resolves
        samples = pd.read_parquet(tmp_path / "run" / str(cell.samples_file))
        assert len(samples) == worker.samples and set(samples["worker"]) == {0}
        assert "cell 1: served as worker 0" in logs
    finally:
        if container is not None:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert not left, f"containers left behind: {left}"
