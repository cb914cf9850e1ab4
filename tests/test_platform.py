"""A runtime's own platform object (runtime.yaml's platform:): rendered around the InferenceService's own
predictor container, with every pod spec inside held to Kubernetes' PodSpec schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.config import parse_runtime_spec, runtimes_dir
from bench.errors import BenchError
from bench.targets.kserve.platform import platform_problems, render_platform

ENV = {"SERVEBENCH_BASE_IMAGE": "servebench-base:bookworm", "SERVEBENCH_DOCKER_OFFLINE": "1"}


def dry_run(tmp_path: Path, runtimes: str) -> Path:
    result = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--target", "kserve", "--dry-run", "--runtime",
                             runtimes, "--model", "iris-logreg", "--scenario", "smoke", "--out", str(tmp_path / "dry")],
                            capture_output=True, text=True, env={**os.environ, **ENV}, timeout=300)
    assert result.returncode == 0, result.stderr
    return tmp_path / "dry" / "manifests"


def test_seldon_deployment_runs_the_same_predictor_container(tmp_path: Path) -> None:
    folder = dry_run(tmp_path, "seldon")
    [isvc] = yaml.safe_load_all((folder / "isvc-seldon-iris-logreg.yaml").read_text())
    [seldon] = yaml.safe_load_all((folder / "platform-seldon-iris-logreg.yaml").read_text())
    assert (seldon["apiVersion"], seldon["kind"]) == ("machinelearning.seldon.io/v1", "SeldonDeployment")
    predictor = seldon["spec"]["predictors"][0]
    [container] = predictor["componentSpecs"][0]["spec"]["containers"]
    assert container == isvc["spec"]["predictor"]["containers"][0]
    assert predictor["graph"]["name"] == container["name"]  # Seldon pairs the graph node with its container
    assert predictor["graph"]["endpoint"]["httpPort"] == container["ports"][0]["containerPort"] == 8080
    assert predictor["graph"]["modelUri"].startswith("pvc://servebench-models/iris-logreg/")


def test_a_typo_in_a_pod_spec_is_caught_offline(tmp_path: Path) -> None:
    folder = tmp_path / "seldon"
    shutil.copytree(runtimes_dir() / "seldon", folder)
    template = folder / "seldon-deployment.yaml"
    template.write_text(template.read_text().replace("        - spec:\n            containers:",
                                                     "        - spec:\n            containerz:"))
    runtime = parse_runtime_spec(folder / "runtime.yaml")
    container = {"name": "c", "image": "i"}
    with pytest.raises(BenchError, match=r"spec\.predictors\.0\.componentSpecs\.0\.spec"):
        render_platform(runtime, "x", {"model_name": "m", "model_uri": "pvc://a/b", "port": 8080,
                                       "container_name": "c"}, container, 1000)
    good = yaml.safe_load((runtimes_dir() / "seldon" / "seldon-deployment.yaml").read_text())
    good["kind"] = "SeldonDeploymentt"
    assert platform_problems(good, runtime)[0].startswith("(top level): expected machinelearning.seldon.io/v1")


def test_an_unknown_placeholder_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "seldon"
    shutil.copytree(runtimes_dir() / "seldon", folder)
    template = folder / "seldon-deployment.yaml"
    template.write_text(template.read_text().replace('"{model_uri}"', '"{model_url}"'))
    with pytest.raises(BenchError, match=r"unknown placeholder '\{model_url\}'"):
        render_platform(parse_runtime_spec(folder / "runtime.yaml"), "x", {"model_name": "m", "port": 1,
                                                                        "container_name": "c"}, {"name": "c"}, 1000)


def test_ray_service_serves_the_runtimes_app_from_its_image_with_the_model_mounted(tmp_path: Path) -> None:
    folder = dry_run(tmp_path, "rayserve")
    [ray] = yaml.safe_load_all((folder / "platform-rayserve-iris-logreg.yaml").read_text())
    [isvc] = yaml.safe_load_all((folder / "isvc-rayserve-iris-logreg.yaml").read_text())
    assert (ray["apiVersion"], ray["kind"]) == ("ray.io/v1", "RayService")
    [app] = yaml.safe_load(ray["spec"]["serveConfigV2"])["applications"]
    assert app["import_path"] == "serve_app:app" and app["runtime_env"]["env_vars"]["MODEL_NAME"] == "iris-logreg"
    cluster = ray["spec"]["rayClusterConfig"]
    image = isvc["spec"]["predictor"]["containers"][0]["image"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == image
    assert worker["containers"][0]["image"] == image
    mount = next(m for m in worker["containers"][0]["volumeMounts"] if m["name"] == "models")
    storage = isvc["spec"]["predictor"]["containers"][0]["env"]
    uri = next(item["value"] for item in storage if item["name"] == "STORAGE_URI")
    assert (mount["mountPath"], mount["subPath"]) == ("/mnt/models", uri.split("/", 3)[3])
    assert worker["volumes"][0]["persistentVolumeClaim"]["claimName"] == uri.split("/")[2]
