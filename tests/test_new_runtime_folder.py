"""A runtime is a folder: a copied runtime folder, and nothing else changed, is a runtime of `bench run --target
kserve` (its InferenceServices, and its stock KServe variant when its runtime.yaml has a kserve.stock block)
and a service of `bench compose prepare`. No Docker, no cluster: the KServe dry run and the generated compose
file show it."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import bench.config
from bench.cli import main
from bench.config import available_runtimes, load_runtimes, runtimes_dir
from bench.load.interactive import parse_targets
from bench.targets.compose import compose_file, render_runtimes_file
from bench.targets.kserve.validate import problems

SHIPPED = available_runtimes()


def copy_runtime(root: Path, source: str, name: str) -> None:
    """cp -r runtimes/<source> runtimes/<name>, then the two edits a copy needs: its name, and its compose
    ports (dropped, so free ones are assigned; two runtimes on one host port are refused)."""
    folder = root / name
    shutil.copytree(runtimes_dir() / source, folder)
    text = (folder / "runtime.yaml").read_text().replace(f"name: {source}\n", f"name: {name}\n")
    (folder / "runtime.yaml").write_text(text[:text.index("\ncompose:") + 1])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project whose runtimes/ holds the shipped runtimes plus fastapi-copy and mlserver-copy."""
    root = tmp_path / "runtimes"
    for name in [*SHIPPED, "common"]:  # common: the serving code runtimes share
        shutil.copytree(runtimes_dir() / name, root / name)
    copy_runtime(root, "fastapi", "fastapi-copy")
    copy_runtime(root, "mlserver", "mlserver-copy")
    monkeypatch.setattr(bench.config, "runtimes_dir", lambda: root)
    monkeypatch.setenv("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm")
    monkeypatch.setenv("SERVEBENCH_DOCKER_OFFLINE", "1")
    sigterm = signal.getsignal(signal.SIGTERM)  # bench.cli.main installs its own handler
    yield root
    signal.signal(signal.SIGTERM, sigterm)


def test_the_project_sees_both_copies(project: Path) -> None:
    assert available_runtimes() == sorted([*SHIPPED, "fastapi-copy", "mlserver-copy"])


def test_a_copied_folder_runs_on_kserve_with_its_own_stock_variant(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "dry"
    code = main(["run", "--target", "kserve", "--dry-run", "--runtime", "all", "--model", "iris-logreg",
                 "--scenario", "smoke", "--out", str(out)])
    assert code == 0
    manifests = out / "manifests"
    for name in ("fastapi-copy", "mlserver-copy", "mlserver-copy-kserve", "mlserver-kserve"):
        [isvc] = yaml.safe_load_all((manifests / f"isvc-{name}-iris-logreg.yaml").read_text())
        assert problems(isvc) == [], name
        assert isvc["metadata"]["labels"]["servebench.io/runtime"] == name
    [stock] = yaml.safe_load_all((manifests / "isvc-mlserver-copy-kserve-iris-logreg.yaml").read_text())
    model = stock["spec"]["predictor"]["model"]
    assert (model["runtime"], model["modelFormat"], model["protocolVersion"]) == ("kserve-mlserver",
                                                                                  {"name": "mlflow"}, "v2")
    assert model["image"].startswith("servebench/mlserver-copy:")  # the copy's own image
    assert stock["metadata"]["annotations"]["servebench.io/predict-path"] == \
        "/v2/models/mlserver-copy-kserve-iris-logreg/infer"
    [custom] = yaml.safe_load_all((manifests / "isvc-fastapi-copy-iris-logreg.yaml").read_text())
    assert custom["spec"]["predictor"]["containers"][0]["image"].startswith("servebench/fastapi-copy:")
    assert len(list(manifests.glob("isvc-*.yaml"))) == len(SHIPPED) + 2 + 3  # 2 copies, 3 stock variants
    commands = (out / "commands.sh").read_text()
    assert commands.count("get clusterservingruntime kserve-mlserver") == 1  # checked once, for both


def test_a_copied_folder_is_a_compose_service_and_a_locust_target(project: Path) -> None:
    generated = render_runtimes_file(load_runtimes("all"), compose_file().read_text())
    services = yaml.safe_load(generated.text)["services"]
    assert set(services) == {*available_runtimes(), "locust-master", "locust-worker"}
    copy = services["fastapi-copy"]
    assert copy["image"] == "${SERVEBENCH_FASTAPI_COPY_IMAGE:?run bench compose prepare first}"
    assert "${SERVEBENCH_FASTAPI_COPY_PORT:-18100}" in copy["command"]
    targets = parse_targets(services["locust-master"]["environment"]["SERVEBENCH_TARGETS"])
    assert list(targets) == available_runtimes()
    assert targets["fastapi-copy"].base_url == "http://127.0.0.1:${SERVEBENCH_FASTAPI_COPY_PORT:-18100}"
