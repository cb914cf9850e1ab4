"""The Docker target for real: images built offline, the smoke scenario in containers, cleanup.

Needs a Docker daemon and a base image (CI starts both: see .ci/run). Without a daemon these tests
skip, unless SERVEBENCH_REQUIRE_DOCKER is set, as CI does, where a missing daemon is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docker_daemon import require_docker

from bench.config import available_runtimes, load_runtime
from bench.models.registry import LocalModel
from bench.provision.containers import inspect
from bench.provision.image_layout import image_layout
from bench.results.store import load_results
from bench.targets.confinement import PIDS_LIMIT
from bench.targets.docker import DockerTarget

pytestmark = [pytest.mark.integration, pytest.mark.docker]

BENCH = [sys.executable, "-m", "bench.cli"]
BASE_IMAGE = os.environ.get("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm")
BRIEF = Path(__file__).parents[1] / "data" / "brief.yaml"  # every runtime: 4 s measured each


@pytest.fixture(scope="module", autouse=True)
def daemon() -> None:
    require_docker()


def owned_containers() -> list[str]:
    result = subprocess.run(["docker", "ps", "-aq", "--filter", "label=servebench.owner"], capture_output=True,
                            text=True, check=True)
    return result.stdout.split()


def run_docker(tmp_path: Path, *runtimes: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BENCH, "run", "--target", "docker", "--runtime", ",".join(runtimes), "--model", "iris-logreg",
         "--scenario", str(BRIEF), "--length", "smoke", "--offline", "--base-image", BASE_IMAGE, "--no-mlflow",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=3000)


def test_smoke_run_of_all_runtimes_in_containers(tmp_path: Path) -> None:
    result = run_docker(tmp_path, "all")
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results(tmp_path / "run")
    assert results.target == "docker" and results.status == "complete"
    assert {c.runtime for c in results.cells} == set(available_runtimes())
    for cell in results.cells:
        assert cell.validity.valid, (cell.runtime, cell.validity.reasons)
        assert cell.parity.ok and cell.target == "docker"
        assert str(cell.fairness.target["image"]).startswith(f"servebench/{cell.runtime}:")
        assert cell.fairness.target["memory_limit"] and cell.fairness.target["cpus_limit"] == 1
        assert "read-only root" in str(cell.fairness.target["confinement"])
        assert (cell.server.startup_s or 0) > 0 and (cell.server.rss_mb_max or 0) > 50
        latency = [cell.latency.p50, cell.latency.p99, cell.latency.max]
        assert latency == sorted(latency)  # type: ignore[type-var]
    for record in results.runtimes.values():
        assert record.provisioning is not None and (record.provisioning.size_mb or 0) > 100
    assert not owned_containers(), "containers left behind"


def test_a_container_that_fails_to_start_reports_its_log_and_the_run_goes_on(tmp_path: Path) -> None:
    broken = tmp_path / "fastapi-broken"
    shutil.copytree(Path(__file__).parents[2] / "runtimes" / "fastapi", broken)
    spec = (broken / "runtime.yaml").read_text().replace("name: fastapi", "name: fastapi-broken")
    (broken / "runtime.yaml").write_text(spec.replace('"app:app"', '"app:no_such_app"'))
    result = subprocess.run(
        [*BENCH, "run", "--target", "docker", "--runtime", f"{broken},fastapi", "--model", "iris-logreg",
         "--scenario", str(BRIEF), "--length", "smoke", "--offline", "--base-image", BASE_IMAGE, "--no-mlflow",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    failed, ok = load_results(tmp_path / "run").cells
    assert not failed.validity.valid and "container exited" in str(failed.validity.error)
    assert "no_such_app" in (tmp_path / "run" / "servers" / "fastapi-broken-iris-logreg.log").read_text()
    assert ok.validity.valid
    assert not owned_containers()


def test_no_daemon_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock", "COLUMNS": "200"}
    doctor = subprocess.run([*BENCH, "doctor"], capture_output=True, text=True, env=env, timeout=120)
    assert doctor.returncode == 2 and "Docker daemon" in doctor.stderr
    run = subprocess.run([*BENCH, "run", "--target", "docker", "--out", str(tmp_path / "run")], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("error: no Docker daemon") and "Traceback" not in run.stderr
    assert not (tmp_path / "run").exists()


def test_images_build_reuses_unchanged_images() -> None:
    result = subprocess.run([*BENCH, "images", "build", "--runtime", "fastapi", "--offline", "--base-image",
                             BASE_IMAGE], capture_output=True, text=True, timeout=3000,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cached" in result.stdout


def _containers_of(pid: int) -> list[str]:
    listed = subprocess.run(["docker", "ps", "-a", "--filter", f"label=servebench.owner={pid}", "--format",
                             "{{.Names}}"], capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_a_sigkilled_harness_leaves_a_container_the_next_run_removes_and_names(tmp_path: Path) -> None:
    """SIGKILL gives the harness no chance to clean up: its container keeps running until the next command
    that uses the Docker target reaps it (its owner's pid no longer runs) and says so."""
    harness = subprocess.Popen(
        [*BENCH, "run", "--target", "docker", "--runtime", "onnx", "--model", "iris-logreg", "--scenario",
         str(BRIEF), "--length", "smoke", "--offline", "--base-image", BASE_IMAGE, "--no-mlflow", "--out",
         str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not _containers_of(harness.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _containers_of(harness.pid)
        assert left, "the harness never started a container"
    finally:
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(timeout=30)
    assert _containers_of(harness.pid) == left  # nothing cleaned up after SIGKILL
    result = run_docker(tmp_path, "onnx")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"removed container {left[0]} (its harness, pid {harness.pid}, no longer runs)" in \
        " ".join(result.stdout.split() + result.stderr.split())
    assert not _containers_of(harness.pid) and not owned_containers()


def test_a_server_container_has_no_capabilities_a_read_only_root_and_bounded_processes(
        models: dict[str, LocalModel], tmp_path: Path) -> None:
    """What the server inside can do, read from the running container: no effective capability, no write
    outside its scratch folders, the process limit set."""
    target = DockerTarget(base_image=BASE_IMAGE, offline=True)
    deployment = target.deploy(load_runtime("fastapi"), models["iris-logreg"], tmp_path)
    try:
        host = (inspect("container", deployment.container) or {})["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["ReadonlyRootfs"] is True and "no-new-privileges" in host["SecurityOpt"]
        assert host["PidsLimit"] == PIDS_LIMIT

        def inside(code: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["docker", "exec", deployment.container, "python", "-c", code],
                                  capture_output=True, text=True, timeout=60)

        status = inside("print(open('/proc/1/status').read())").stdout
        capabilities = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines()
                        if line.startswith("Cap")}
        assert capabilities["CapEff"] == capabilities["CapPrm"] == capabilities["CapBnd"] == 0, capabilities
        assert "NoNewPrivs:\t1" in status
        refused = inside("open('/app/planted.py', 'w')")
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        for folder in image_layout(load_runtime("fastapi")).writable:
            assert inside(f"open('{folder}/scratch', 'w').write('x')").returncode == 0, folder
    finally:
        deployment.stop()
    assert not owned_containers()
