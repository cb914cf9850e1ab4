"""The KServe target without a cluster: rendered manifests against KServe's CRD (strictly) and Kubernetes'
schemas, the exact commands of `bench cluster up|down` and of a deploy (from the dry-run runner), cleanup
on failure and Ctrl-C, and the one-line errors of bad input.

kind and KServe cannot run on this project's machines; what these tests cannot show is listed in
the guide's "Kubernetes (kind + KServe)" section (docs/guide.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from bench.config import available_runtimes, load_runtime, project_root
from bench.errors import BenchError, DeployError
from bench.load.worker_auth import TOKEN_ENV
from bench.models.catalog import get_spec
from bench.models.registry import LocalModel
from bench.provision.image_layout import image_layout
from bench.targets.kserve import cluster, manifests, pod_security, versions
from bench.targets.kserve.runner import Result, Runner
from bench.targets.kserve.target import KServeTarget, planned_model
from bench.targets.kserve.validate import INFERENCESERVICE_CRD, problems, strict, validate
from bench.targets.launch import CpuPlan

RUNTIMES = ("mlserver", "mlflow", "fastapi", "bentoml")
MODELS = ("iris-logreg", "digits-rf", "digits-mlp", "digits-cnn")
BENCH = [sys.executable, "-m", "bench.cli"]
CPUS = CpuPlan((1,), (0,))


def dry_target(runner: Runner | None = None) -> KServeTarget:
    quiet = Runner(dry_run=True, echo=lambda _l: None)
    return KServeTarget(CPUS, "servebench-base:bookworm", True, "4g", runner or quiet)


def every_inference_service(tmp_path: Path) -> list[dict[str, Any]]:
    target = dry_target()
    rendered = []
    for runtime in target.expand_runtimes([load_runtime(name) for name in RUNTIMES]):
        for model in MODELS:
            rendered.append(target.render(runtime, planned_model(get_spec(model)), tmp_path)[0])
    return rendered


# ---- strict validation ------------------------------------------------------------------------------


def test_every_rendered_inference_service_passes_the_strict_crd_schema(tmp_path: Path) -> None:
    rendered = every_inference_service(tmp_path)
    assert len(rendered) == 5 * 4  # four runtimes and the stock-runtime variant, four models
    for isvc in rendered:
        assert problems(isvc) == [], isvc["metadata"]["name"]
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


@pytest.mark.parametrize(("path", "typo"), [
    (["spec", "predictor"], "minReplica"),
    (["spec", "predictor", "containers", 0], "imagePullPolicyy"),
    (["spec", "predictor", "containers", 0, "readinessProbe", "httpGet"], "paht"),
    (["spec", "predictor", "containers", 0, "resources"], "limit"),
    (["spec"], "predicter"),
])
def test_a_misspelled_field_is_rejected(tmp_path: Path, path: list[Any], typo: str) -> None:
    isvc = next(i for i in every_inference_service(tmp_path) if i["metadata"]["name"] == "fastapi-iris-logreg")
    node = isvc
    for key in path:
        node = node[key]
    node[typo] = node.get(typo, 1)
    found = problems(isvc)
    assert found and typo in found[0], found


def test_a_misspelled_field_of_the_stock_variant_is_rejected(tmp_path: Path) -> None:
    isvc = next(i for i in every_inference_service(tmp_path) if i["metadata"]["name"] == "mlserver-kserve-digits-rf")
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in problem for problem in problems(isvc))


def test_strict_closes_listed_objects_only() -> None:
    schema = {"type": "object", "properties": {
        "listed": {"type": "object", "properties": {"a": {"type": "string"}}},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object"}}}
    closed = strict(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["listed"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["open"]
    assert closed["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in closed["properties"]["free"]
    assert "additionalProperties" not in schema  # the original is left alone


def test_the_crd_schema_alone_would_let_a_typo_through(tmp_path: Path) -> None:
    """Why strict mode exists: KServe's published schema accepts (and the API server drops) unknown fields."""
    import jsonschema

    crd = yaml.safe_load(INFERENCESERVICE_CRD.read_text())
    loose = jsonschema.Draft7Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    isvc = every_inference_service(tmp_path)[0]
    isvc["spec"]["predictor"]["minReplica"] = 1
    assert not list(loose.iter_errors(isvc))
    assert problems(isvc)


def test_core_objects_pass_kubernetes_schemas_strictly_and_typos_fail() -> None:
    objects = [manifests.namespace(), *manifests.model_storage(),
               manifests.workers("servebench/locust:0123456789abcdef", 2, "172.18.0.1", 5557)]
    assert [o["kind"] for o in objects] == ["Namespace", "PersistentVolume", "PersistentVolumeClaim", "Deployment"]
    validate(objects)
    claim = manifests.model_storage()[1]
    claim["spec"]["acessModes"] = claim["spec"].pop("accessModes")
    with pytest.raises(BenchError, match="acessModes"):
        validate([claim])
    workers = manifests.workers("servebench/locust:0123456789abcdef", 2, "172.18.0.1", 5557)
    workers["spec"]["template"]["spec"]["containers"][0]["imagePullPolicey"] = "Never"
    with pytest.raises(BenchError, match="imagePullPolicey"):
        validate([workers])


def test_the_worker_pods_run_bench_worker_against_the_master_on_the_load_generators_image() -> None:
    workers = manifests.workers("servebench/locust:0123456789abcdef", 3, "172.18.0.1", 5558)
    pod = workers["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert workers["spec"]["replicas"] == 3
    assert container["command"] == ["python", "-m", "bench.load.worker"]
    assert container["args"][:2] == ["--master", "172.18.0.1:5558"]
    assert container["image"] == "servebench/locust:0123456789abcdef"
    assert container["imagePullPolicy"] == "IfNotPresent"  # loaded with kind load, never pulled
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert workers["spec"]["selector"]["matchLabels"] == workers["spec"]["template"]["metadata"]["labels"]
    assert manifests.predictor_service_url("fastapi-iris-logreg") == \
        "http://fastapi-iris-logreg-predictor.servebench.svc.cluster.local"


# ---- what the predictor container is derived from ----------------------------------------------------


def test_the_predictor_container_comes_from_runtime_yaml_and_the_dockerfile(tmp_path: Path) -> None:
    for name in RUNTIMES:
        runtime = load_runtime(name)
        layout = image_layout(runtime)
        container, served = manifests.predictor_container(runtime, "iris-logreg", "servebench/x:abc", layout,
                                                          manifests.Resources("1", "4Gi"), "pvc://p/m")
        assert container["command"][0].startswith(layout.bin_dir + "/") or container["command"][0].startswith("/")
        assert container["command"] + container["args"] == [
            part.replace("{bin}", layout.bin_dir).replace("{python}", f"{layout.bin_dir}/python")
                .replace("{runtime_dir}", layout.runtime_dir).replace("{model_dir}", layout.model_dir)
                .replace("{work_dir}", layout.work_dir).replace("{host}", "0.0.0.0").replace("{port}", "8080")
                .replace("{model_name}", "iris-logreg").replace("{knob_workers}", "1") for part in runtime.command]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["STORAGE_URI"] == "pvc://p/m" and env["OMP_NUM_THREADS"] == "1"
        assert served.port == layout.port == 8080 == container["ports"][0]["containerPort"]
        assert container["readinessProbe"]["httpGet"] == {"path": served.readiness_path, "port": 8080}
        assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}
        assert container["imagePullPolicy"] == "IfNotPresent" and not container["image"].endswith(":latest")
        assert container["securityContext"]["runAsUser"] == 1000
        assert "{" not in yaml.safe_dump(container)  # every placeholder filled


def test_fixed_ports_in_a_pod_and_free_ones_on_a_shared_host() -> None:
    runtime = load_runtime("mlserver")
    layout = image_layout(runtime)
    resources = manifests.Resources("1", "1Gi")
    pod, _ = manifests.predictor_container(runtime, "m", "i", layout, resources, "pvc://p/m")
    env = {item["name"]: item["value"] for item in pod["env"]}
    ports = (env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"], env["MLSERVER_METRICS_PORT"])
    assert ports == ("8080", "8081", "8082")
    host, served = manifests.predictor_container(runtime, "m", "i", layout, resources, "pvc://p/m",
                                                 host_network_ports=True)
    env = {item["name"]: item["value"] for item in host["env"]}
    ports = {env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"], env["MLSERVER_METRICS_PORT"]}
    assert len(ports) == 3 and str(served.port) == env["MLSERVER_HTTP_PORT"] != "8080"


def test_stock_variants_come_from_the_runtime_yaml_kserve_block() -> None:
    target = dry_target()
    expanded = target.expand_runtimes([load_runtime(name) for name in RUNTIMES])
    stocked = [name for name in RUNTIMES if load_runtime(name).kserve.stock is not None]
    assert [r.name for r in expanded if r.name.endswith("-kserve")] == [f"{name}-kserve" for name in stocked]
    variant = next(r for r in expanded if r.name == "mlserver-kserve")
    assert variant.settings["serving_runtime"] == "kserve-mlserver" and variant.protocol == "v2"
    assert target.variants == {"mlserver-kserve": load_runtime("mlserver")}


def test_the_stock_manifest_reads_port_and_paths_from_the_block(tmp_path: Path) -> None:
    runtime = load_runtime("mlserver")
    assert runtime.kserve.stock is not None
    moved = runtime.kserve.stock.model_copy(update={"port": 9000, "predict_path": "/x/{model_name}/predict"})
    runtime = runtime.model_copy(update={"kserve": runtime.kserve.model_copy(update={"stock": moved})})
    target = dry_target()
    variant = target.expand_runtimes([runtime])[1]
    isvc, served = target.render(variant, planned_model(get_spec("iris-logreg")), tmp_path)
    assert (served.port, served.predict_path) == (9000, "/x/mlserver-kserve-iris-logreg/predict")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "kserve-mlserver" and problems(isvc) == []


def test_a_runtime_named_like_a_stock_variant_is_refused() -> None:
    clash = load_runtime("fastapi").model_copy(update={"name": "mlserver-kserve"})
    with pytest.raises(BenchError, match="'mlserver-kserve' has the name of mlserver's stock KServe variant"):
        dry_target().expand_runtimes([load_runtime("mlserver"), clash])


def test_cluster_up_checks_every_cluster_serving_runtime_the_runtime_folders_name(
        tmp_path: Path, tools_present: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.stock_cluster_runtimes() == ["kserve-mlserver", "kserve-sklearnserver"]
    monkeypatch.setenv("SERVEBENCH_HOME", str(tmp_path / "home"))
    runner = Canned({"kind get clusters": Result(0, "servebench\n"),
                     "kubectl --context kind-servebench get clusterservingruntime kserve-other": Result(1)})
    with pytest.raises(BenchError, match="no ClusterServingRuntime kserve-other") as caught:
        cluster.cluster_up(runner, tmp_path, lambda _m: None, ["kserve-mlserver", "kserve-other"])
    assert caught.value.hint and "kserve.stock" in caught.value.hint


def test_memory_and_names() -> None:
    assert manifests.k8s_memory("4g") == "4Gi" and manifests.k8s_memory("512m") == "512Mi"
    with pytest.raises(BenchError, match="bad memory limit"):
        manifests.k8s_memory("lots")
    assert manifests.object_name("my_runtime", "digits-cnn") == "my-runtime-digits-cnn"
    with pytest.raises(BenchError, match="at most 45"):
        manifests.object_name("a-very-long-runtime-folder-name-indeed", "digits-cnn")


# ---- the commands: cluster up, deploy, teardown ------------------------------------------------------


def test_cluster_up_dry_run_prints_the_whole_sequence(tmp_path: Path) -> None:
    printed: list[str] = []
    runner = Runner(dry_run=True, echo=printed.append)
    cluster.cluster_up(runner, tmp_path, runner.note)
    commands = [" ".join(c) for c in runner.history]
    ctx = "--context kind-servebench"
    expected = [
        "kind get clusters",
        f"kind create cluster --name servebench --image {versions.NODE_IMAGE} --config {tmp_path}/kind-cluster.yaml "
        "--wait 180s",
        f"kubectl {ctx} wait --for=condition=Ready node --all --timeout=300s",
        "helm --kube-context kind-servebench status cert-manager --namespace cert-manager",
        "helm --kube-context kind-servebench install cert-manager cert-manager --repo https://charts.jetstack.io "
        f"--version {versions.CERT_MANAGER} --set crds.enabled=true --namespace cert-manager --create-namespace "
        "--wait --timeout 10m",
        f"kubectl {ctx} wait --for=condition=Available deployment --all --namespace cert-manager --timeout=300s",
        "helm --kube-context kind-servebench status kserve-crd --namespace kserve",
        f"helm --kube-context kind-servebench install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version "
        f"{versions.KSERVE} --namespace kserve --create-namespace --wait --timeout 10m",
        "helm --kube-context kind-servebench status kserve --namespace kserve",
        f"helm --kube-context kind-servebench install kserve oci://ghcr.io/kserve/charts/kserve-resources --version "
        f"{versions.KSERVE} --set kserve.controller.deploymentMode=Standard "
        "--set kserve.controller.gateway.disableIngressCreation=true --namespace kserve --create-namespace --wait "
        "--timeout 10m",
        f"kubectl {ctx} wait --for=condition=Available deployment/kserve-controller-manager --namespace kserve "
        "--timeout=300s",
        f"kubectl {ctx} wait --for=condition=Established crd/inferenceservices.serving.kserve.io --timeout=300s",
        "helm --kube-context kind-servebench status metrics-server --namespace kube-system",
        "helm --kube-context kind-servebench install metrics-server metrics-server --repo "
        f"https://kubernetes-sigs.github.io/metrics-server/ --version {versions.METRICS_SERVER_CHART} "
        "--set args={--kubelet-insecure-tls} --namespace kube-system --create-namespace --wait --timeout 10m",
        f"kubectl {ctx} get clusterservingruntime kserve-mlserver",
        f"kubectl {ctx} get clusterservingruntime kserve-sklearnserver",
        f"kubectl {ctx} apply -f {tmp_path}/cluster-namespace.yaml",
        f"kubectl {ctx} wait --for=jsonpath={{.status.phase}}=Bound pvc/servebench-models --namespace servebench "
        "--timeout=60s",
    ]
    assert commands == expected
    assert "# check: kind get clusters" in printed  # probes are shown as checks
    config = yaml.safe_load((tmp_path / "kind-cluster.yaml").read_text())
    mount = config["nodes"][0]["extraMounts"][0]
    assert Path(mount["hostPath"]).is_absolute() and mount["containerPath"] == manifests.NODE_MODELS_PATH
    storage = list(yaml.safe_load_all((tmp_path / "cluster-namespace.yaml").read_text()))
    assert [o["kind"] for o in storage] == ["Namespace", "PersistentVolume", "PersistentVolumeClaim",
                                            "NetworkPolicy", "NetworkPolicy", "NetworkPolicy"]


class Canned(Runner):
    """A real-mode runner whose commands are answered from a table (first matching prefix), nothing run."""

    def __init__(self, answers: dict[str, Result]) -> None:
        super().__init__(dry_run=False, echo=lambda _l: None)
        self.answers = answers

    def run(self, *command: str, probe: bool = False, check: bool = True, timeout: float = 900) -> Result:
        self.history.append(list(command))
        text = " ".join(command)
        result = next((answer for prefix, answer in self.answers.items() if text.startswith(prefix)), Result(0))
        if check and not probe and not result.ok:
            raise BenchError(f"{command[0]} failed: {result.tail()}")
        return result


@pytest.fixture
def tools_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "require_tools", lambda *names: None)


def test_cluster_up_skips_what_exists(tmp_path: Path, tools_present: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEBENCH_HOME", str(tmp_path / "home"))
    runner = Canned({"kind get clusters": Result(0, "other\nservebench\n")})  # every helm status answers 0
    cluster.cluster_up(runner, tmp_path, lambda _m: None)
    commands = [" ".join(c) for c in runner.history]
    assert not [c for c in commands if c.startswith(("kind create", "helm --kube-context kind-servebench install"))]
    assert any(c.startswith("kubectl --context kind-servebench apply -f") for c in commands)  # idempotent apply


def test_cluster_down_deletes_only_an_existing_cluster(tools_present: None) -> None:
    absent = Canned({"kind get clusters": Result(0, "other\n")})
    cluster.cluster_down(absent, lambda _m: None)
    assert absent.history == [["kind", "get", "clusters"]]
    present = Canned({"kind get clusters": Result(0, "servebench\n")})
    cluster.cluster_down(present, lambda _m: None)
    assert present.history[-1] == ["kind", "delete", "cluster", "--name", "servebench"]
    dry = Runner(dry_run=True, echo=lambda _l: None)
    cluster.cluster_down(dry, lambda _m: None)
    assert dry.history[-1] == ["kind", "delete", "cluster", "--name", "servebench"]


def test_deploy_sequence_loads_each_image_once_then_apply_wait_forward_delete(tmp_path: Path) -> None:
    runner = Runner(dry_run=True, echo=lambda _l: None)
    target = dry_target(runner)
    runtimes = target.expand_runtimes([load_runtime("mlserver")])
    assert [r.name for r in runtimes] == ["mlserver", "mlserver-kserve"]
    model = planned_model(get_spec("iris-logreg"))
    for runtime in runtimes:
        target.provision(runtime, tmp_path / "servers", lambda _m: None)
        deployment = target.deploy(runtime, model, tmp_path / "servers")
        deployment.stop()
    commands = [" ".join(c) for c in runner.history]
    tag = target.tags["mlserver"]
    ns = "--namespace servebench"
    shapes = [
        f"kind load docker-image {tag} --name servebench",
        f"kubectl --context kind-servebench apply -f {tmp_path}/manifests/isvc-mlserver-iris-logreg.yaml",
        f"kubectl --context kind-servebench wait --for=condition=Ready inferenceservice/mlserver-iris-logreg {ns} "
        "--timeout=600s",
        rf"kubectl --context kind-servebench port-forward {ns} deployment/mlserver-iris-logreg-predictor \d+:8080 "
        "--address 127.0.0.1",
        f"kubectl --context kind-servebench delete inferenceservice mlserver-iris-logreg {ns} --ignore-not-found "
        "--wait=true --timeout=120s",
        f"kubectl --context kind-servebench apply -f {tmp_path}/manifests/isvc-mlserver-kserve-iris-logreg.yaml",
        f"kubectl --context kind-servebench wait --for=condition=Ready inferenceservice/mlserver-kserve-iris-logreg "
        f"{ns} --timeout=600s",
        rf"kubectl --context kind-servebench port-forward {ns} deployment/mlserver-kserve-iris-logreg-predictor "
        r"\d+:8080 --address 127.0.0.1",
        f"kubectl --context kind-servebench delete inferenceservice mlserver-kserve-iris-logreg {ns} "
        "--ignore-not-found --wait=true --timeout=120s",
    ]
    assert len(commands) == len(shapes), commands
    for command, shape in zip(commands, shapes, strict=True):
        assert re.fullmatch(shape if "\\d" in shape else re.escape(shape), command), (command, shape)
    assert tag.startswith("servebench/mlserver:") and not tag.endswith(":latest")


def fake_model(tmp_path: Path) -> LocalModel:
    spec = get_spec("iris-logreg")
    folder = tmp_path / "home" / "models" / "iris-logreg" / "f00" / "model"
    folder.mkdir(parents=True)
    return LocalModel(spec, "1", "f00", folder, np.zeros((1, 4)), np.zeros((1, 3)))


@pytest.fixture
def real_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools_present: None) -> Iterator[None]:
    """A 'real' KServeTarget whose cluster is a Canned runner: no Docker build, no kind."""
    monkeypatch.setenv("SERVEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("bench.targets.kserve.target.DockerTarget", lambda *args, **kwargs: SimpleNamespace(reaped=()))
    yield


def test_a_deploy_that_never_gets_ready_reports_and_deletes(tmp_path: Path, real_mode: None) -> None:
    events = "x Warning BackOff pod/fastapi-iris-logreg-predictor-1 back-off restarting\nunrelated"
    runner = Canned({"kind get clusters": Result(0, "servebench"),
                     "kubectl --context kind-servebench wait --for=condition=Ready": Result(1, "", "timed out"),
                     "kubectl --context kind-servebench get events": Result(0, events)})
    target = KServeTarget(CPUS, "servebench-base:bookworm", True, "4g", runner)
    target.tags["fastapi"] = "servebench/fastapi:0123456789abcdef"
    with pytest.raises(DeployError, match="not Ready after 600 s") as failure:
        target.deploy(load_runtime("fastapi"), fake_model(tmp_path), tmp_path / "servers")
    assert "back-off restarting" in failure.value.log_tail and "unrelated" not in failure.value.log_tail
    commands = [" ".join(c) for c in runner.history]
    assert commands[-1].startswith("kubectl --context kind-servebench delete inferenceservice fastapi-iris-logreg")
    assert not any("port-forward" in c for c in commands)


def test_a_manifest_problem_is_a_deploy_error_with_a_hint_and_no_log(tmp_path: Path, real_mode: None) -> None:
    runner = Canned({"kind get clusters": Result(0, "servebench")})
    target = KServeTarget(CPUS, "servebench-base:bookworm", True, "4g", runner)
    target.tags["fastapi"] = "servebench/fastapi:0123456789abcdef"
    (tmp_path / "elsewhere").mkdir()
    outside = LocalModel(get_spec("iris-logreg"), "1", "f00", tmp_path / "elsewhere", np.zeros((1, 4)),
                         np.zeros((1, 3)))
    with pytest.raises(DeployError, match=r"fastapi on KServe: .* is not under") as failure:
        target.deploy(load_runtime("fastapi"), outside, tmp_path / "servers")
    assert failure.value.hint == "the kind cluster mounts only $SERVEBENCH_HOME/models"
    assert failure.value.log_tail == ""
    assert "(hint: the kind cluster mounts only" in failure.value.summary()


def test_deployments_are_owned_from_apply_to_delete(tmp_path: Path) -> None:
    from bench.targets.owned import OWNED

    target = dry_target()
    deployment = target.deploy(load_runtime("fastapi"), planned_model(get_spec("iris-logreg")), tmp_path / "servers")
    assert deployment in OWNED.live()
    deployment.stop()
    assert deployment not in OWNED.live()


def test_ctrl_c_while_waiting_deletes_the_inference_service(tmp_path: Path, real_mode: None) -> None:
    class Interrupting(Canned):
        def run(self, *command: str, probe: bool = False, check: bool = True, timeout: float = 900) -> Result:
            if "--for=condition=Ready" in command:
                self.history.append(list(command))
                raise KeyboardInterrupt
            return super().run(*command, probe=probe, check=check, timeout=timeout)

    runner = Interrupting({"kind get clusters": Result(0, "servebench")})
    target = KServeTarget(CPUS, "servebench-base:bookworm", True, "4g", runner)
    target.tags["fastapi"] = "servebench/fastapi:0123456789abcdef"
    with pytest.raises(KeyboardInterrupt):
        target.deploy(load_runtime("fastapi"), fake_model(tmp_path), tmp_path / "servers")
    assert runner.history[-1][:4] == ["kubectl", "--context", "kind-servebench", "delete"]


def test_pod_metrics_come_from_kubectl_top(tmp_path: Path, real_mode: None) -> None:
    runner = Canned({"kind get clusters": Result(0, "servebench"),
                     "kubectl --context kind-servebench top pod": Result(0, "fastapi-iris-logreg-predictor-1   250m   "
                                                                            "1536Mi\n")})
    from bench.targets.kserve import target as kserve

    deployment = kserve.KServeDeployment(runtime=load_runtime("fastapi"), model=fake_model(tmp_path),
                                         endpoint=kserve.Endpoint("http://x", "/p", "/r", "kserve-v1", "m"),
                                         log_path=tmp_path / "log", runner=runner, name="fastapi-iris-logreg")
    assert deployment.cpu_percent() == pytest.approx(25.0) and deployment.rss_mb() == pytest.approx(1536.0)


# ---- the command line ----------------------------------------------------------------------------------


def bench(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=project_root())


def one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def path_without(tool: str, tmp_path: Path) -> str:
    """PATH with a bin folder that has python but lacks the tool (and kind, which this machine lacks anyway)."""
    folders = [folder for folder in os.environ["PATH"].split(os.pathsep)
               if not (Path(folder) / tool).exists() and not (Path(folder) / "kind").exists()]
    return os.pathsep.join(folders)


def test_cluster_up_without_kind_is_one_line(tmp_path: Path) -> None:
    one_error_line(bench("cluster", "up", env={"PATH": path_without("kind", tmp_path)}),
                   "the kind command is not installed", "hint:")


def test_run_on_kserve_without_a_cluster_tool_is_one_line(tmp_path: Path) -> None:
    one_error_line(bench("run", "--target", "kserve", "--out", str(tmp_path / "run"),
                         env={"PATH": path_without("kubectl", tmp_path)}), "is not installed")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--dry-run", "--out", "OUT"], "--dry-run is for --target kserve"),
    (["run", "--target", "kserve", "--dry-run"], "--dry-run needs --out DIR"),
    (["run", "--target", "kserve", "--dry-run", "--memory", "lots", "--out", "OUT"], "bad memory limit"),
    (["run", "--target", "kserve", "--dry-run", "--runtime", "nope", "--out", "OUT"], "unknown runtime 'nope'"),
    (["cluster", "sideways"], "invalid choice: 'sideways'"),
])
def test_bad_input_is_one_line(tmp_path: Path, argv: list[str], says: str) -> None:
    one_error_line(bench(*[str(tmp_path / "out") if arg == "OUT" else arg for arg in argv]), says)


def test_dry_run_writes_valid_manifests_and_every_command(tmp_path: Path) -> None:
    result = bench("run", "--target", "kserve", "--dry-run", "--runtime", "all", "--model", "all", "--scenario",
                   "smoke", "--out", str(tmp_path / "dry"), env={"SERVEBENCH_BASE_IMAGE": "servebench-base:bookworm",
                                                                 "SERVEBENCH_DOCKER_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "dry" / "manifests"
    isvcs = sorted(folder.glob("isvc-*.yaml"))
    # every runtime and mlserver's stock variant x 4 models, and kserve's sklearnserver x the 2 scikit-learn ones
    expected = (len(available_runtimes()) + 1) * 4 + 2
    assert len(isvcs) == expected and not (folder / "workers.yaml").exists()  # no --cluster-workers
    for path in [*isvcs, folder / "cluster-namespace.yaml"]:
        validate(list(yaml.safe_load_all(path.read_text())), path.name)  # schemas and the restricted profile
    platforms = sorted(folder.glob("platform-*.yaml"))  # the SeldonDeployments and RayServices (no schema here)
    assert platforms and all(pod_security.problems(manifest) == [] for path in platforms
                             for manifest in yaml.safe_load_all(path.read_text()))
    commands = (tmp_path / "dry" / "commands.sh").read_text()
    for step in ("kind create cluster", "kind load docker-image servebench/mlserver:", "apply -f",
                 "wait --for=condition=Ready inferenceservice/mlserver-kserve-digits-cnn", "port-forward",
                 "delete inferenceservice bentoml-digits-cnn"):
        assert step in commands and step in result.stdout
    assert commands.count("kind load docker-image") == len(available_runtimes())  # stock variants reuse theirs
    assert not (tmp_path / "dry" / "results.json").exists()


def test_dry_run_with_cluster_workers_starts_the_worker_pods_once_and_deletes_them(tmp_path: Path) -> None:
    result = bench("run", "--target", "kserve", "--dry-run", "--runtime", "fastapi,mlserver", "--model", "iris-logreg",
                   "--scenario", "smoke", "--cluster-workers", "2", "--out", str(tmp_path / "dry"),
                   env={"SERVEBENCH_BASE_IMAGE": "servebench-base:bookworm", "SERVEBENCH_DOCKER_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    workers = list(yaml.safe_load_all((tmp_path / "dry" / "manifests" / "workers.yaml").read_text()))
    validate(workers, "workers.yaml")
    assert workers[0]["spec"]["replicas"] == 2
    assert workers[0]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--master", "172.18.0.1:5557"]
    commands = (tmp_path / "dry" / "commands.sh").read_text().splitlines()
    loads = [line for line in commands if line.startswith("kind load docker-image servebench/locust:")]
    applies = [line for line in commands if line.endswith("workers.yaml")]
    deletes = [line for line in commands if "delete deployment servebench-workers" in line]
    assert len(loads) == len(applies) == len(deletes) == 1  # once per run, not per InferenceService
    # applied once the first predictor is ready, deleted after the last InferenceService
    first_ready = next(i for i, line in enumerate(commands) if "wait --for=condition=Ready" in line)
    assert commands.index(applies[0]) > first_ready
    assert commands.index(deletes[0]) > max(i for i, line in enumerate(commands) if "delete inferenceservice" in line)
    assert ("the remote workers send to http://fastapi-iris-logreg-predictor.servebench.svc.cluster.local/predict"
            in result.stdout)
    # the run's worker token reaches the pods from a Secret applied through stdin: in no file, no argv
    token = "dry-run-token-8c1f"
    rerun = bench("run", "--target", "kserve", "--dry-run", "--runtime", "fastapi", "--model", "iris-logreg",
                  "--scenario", "smoke", "--cluster-workers", "1", "--out", str(tmp_path / "dry2"),
                  env={"SERVEBENCH_BASE_IMAGE": "servebench-base:bookworm", "SERVEBENCH_DOCKER_OFFLINE": "1",
                       TOKEN_ENV: token})
    assert rerun.returncode == 0, rerun.stderr
    assert any(line.endswith(" apply -f -") for line in (tmp_path / "dry2" / "commands.sh").read_text().splitlines())
    assert not [path for path in (tmp_path / "dry2").rglob("*") if path.is_file() and token in path.read_text()]
    assert token not in rerun.stdout + rerun.stderr
    env = workers[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": manifests.WORKER_TOKEN_SECRET, "key": "token"}}} \
        in env


@pytest.mark.parametrize(("argv", "says"), [
    (["--cluster-workers", "2"], "--cluster-workers starts worker pods in a cluster target's cluster"),
    (["--target", "kserve", "--cluster-workers", "2", "--expect-workers", "2"], "both say how many workers"),
    (["--target", "kserve", "--cluster-workers", "0"], "--cluster-workers 0: between 1 and"),
    (["--target", "kserve", "--cluster-workers", "1", "--master-bind", "0.0.0.0:5557"], "one they reach"),
    (["--master-bind", "127.0.0.1:5999"], "--master-bind is where remote workers join"),
])
def test_cluster_worker_options_are_checked_first(tmp_path: Path, argv: list[str], says: str) -> None:
    one_error_line(bench("run", "--dry-run", "--out", str(tmp_path / "out"), *argv), says)
    assert not (tmp_path / "out").exists()


def test_the_guide_names_every_pinned_version() -> None:
    guide = (project_root() / "docs" / "guide.md").read_text()
    section = guide[guide.index("## Kubernetes (kind + KServe)"):]
    for what, version in versions.ALL.items():
        assert version in section, what


def test_the_sklearnserver_variant_matches_kserves_own_cluster_serving_runtime(tmp_path: Path) -> None:
    """What runtimes/kserve/runtime.yaml says of kserve-sklearnserver is what the stock runtime declares, and
    its InferenceServices exist for the scikit-learn models only, in KServe's image, answering probabilities."""
    csr = yaml.safe_load((project_root() / "tests" / "data" / "kserve" / "kserve-sklearnserver.yaml").read_text())
    stock = load_runtime("kserve").kserve.stock
    assert stock is not None and csr["metadata"]["name"] == stock.cluster_runtime
    assert stock.model_format in [entry["name"] for entry in csr["spec"]["supportedModelFormats"]]
    assert stock.protocol_version in csr["spec"]["protocolVersions"]
    assert f"--http_port={stock.port}" in csr["spec"]["containers"][0]["args"]
    result = bench("run", "--target", "kserve", "--dry-run", "--runtime", "kserve", "--model", "all", "--scenario",
                   "smoke", "--out", str(tmp_path / "dry"), env={"SERVEBENCH_BASE_IMAGE": "servebench-base:bookworm",
                                                                 "SERVEBENCH_DOCKER_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    variants = sorted(path.name for path in (tmp_path / "dry" / "manifests").glob("isvc-kserve-kserve-*.yaml"))
    assert variants == ["isvc-kserve-kserve-digits-rf.yaml", "isvc-kserve-kserve-iris-logreg.yaml"]
    [isvc] = yaml.safe_load_all((tmp_path / "dry" / "manifests" / variants[1]).read_text())
    validate([isvc], variants[1])
    model = isvc["spec"]["predictor"]["model"]
    assert "image" not in model  # KServe's own sklearnserver image: ours has no sklearnserver
    assert {"name": "PREDICT_PROBA", "value": "true"} in model["env"]
    assert "unsupported: KServe's sklearnserver loads scikit-learn models only" in result.stdout + result.stderr
