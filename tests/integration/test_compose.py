"""docker-compose.yml for real, with Debian's docker-compose: prepare, bring up, probe, swarm, tear down.

`bench compose prepare` writes the runtime services into docker-compose.runtimes.yml; both files are
named with -f, as a user naming files explicitly must (the env file's COMPOSE_FILE yields to -f). A
subset keeps it within what the vfs storage driver allows (creating a container copies its image): the
FastAPI runtime, the MLflow server and a Locust master with one worker; every generated runtime service
is checked against its runtime.yaml by tests/test_compose.py. Ports are free ones and the compose project
has its own name, so a user's `docker-compose up` on the default ports is left alone.
Skips without a daemon or docker-compose, unless SERVEBENCH_REQUIRE_DOCKER is set (as CI sets it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from docker_daemon import require_docker

from bench.ports import free_port
from bench.protocols import codec_for
from bench.targets.compose import compose_file, runtimes_file

pytestmark = [pytest.mark.integration, pytest.mark.docker]

BASE_IMAGE = os.environ.get("SERVEBENCH_BASE_IMAGE", "servebench-base:bookworm")
MODEL = "iris-logreg"
SERVICES = ["fastapi", "mlflow-server", "locust-master", "locust-worker"]
HEALTHY_WITHIN_S = 600


@pytest.fixture(scope="module", autouse=True)
def daemon() -> None:
    require_docker(None if shutil.which("docker-compose") else "docker-compose is not installed")


def project_containers(project: str) -> list[str]:
    result = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def health(project: str) -> dict[str, str]:
    """container name -> health (or state, for containers without a healthcheck)."""
    states = {}
    for container in project_containers(project):
        result = subprocess.run(["docker", "inspect", "--format", "{{.Name}} {{.State.Status}} "
                                 "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container],
                                capture_output=True, text=True, check=False)
        name, status, *healthy = result.stdout.split()
        states[name.lstrip("/")] = healthy[0] if healthy else status
    return states


def get(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The subset up and healthy; always torn down, and no container may be left."""
    env_file = tmp_path_factory.mktemp("compose") / "compose.env"
    ports = {name: str(free_port()) for name in ("SERVEBENCH_FASTAPI_PORT", "SERVEBENCH_MLFLOW_UI_PORT",
                                                 "SERVEBENCH_LOCUST_PORT", "SERVEBENCH_LOCUST_MASTER_PORT")}
    env = {**os.environ, **ports, "COLUMNS": "200"}
    prepare = subprocess.run([sys.executable, "-m", "bench.cli", "compose", "prepare", "--model", MODEL,
                              "--env-file", str(env_file), "--workers", "1", "--offline", "--base-image", BASE_IMAGE],
                             capture_output=True, text=True, env=env, timeout=3000)
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    assert f"--env-file {env_file}" in prepare.stdout
    project = f"servebench-test-{secrets.token_hex(3)}"
    assert runtimes_file().is_file()  # written by prepare
    compose = ["docker-compose", "--project-name", project, "--env-file", str(env_file), "-f", str(compose_file()),
               "-f", str(runtimes_file())]
    try:
        started = time.monotonic()
        up = subprocess.run([*compose, "up", "-d", *SERVICES], capture_output=True, text=True, env=env, timeout=1200)
        assert up.returncode == 0, up.stderr[-3000:]
        while time.monotonic() - started < HEALTHY_WITHIN_S:
            states = health(project)
            if len(states) == len(SERVICES) and all(s in ("healthy", "running") for s in states.values()) \
                    and list(states.values()).count("healthy") == 3:
                break
            assert not any(s in ("unhealthy", "exited", "dead") for s in states.values()), states
            time.sleep(2)
        else:
            logs = subprocess.run([*compose, "logs", "--tail", "20"], capture_output=True, text=True, env=env)
            pytest.fail(f"not healthy within {HEALTHY_WITHIN_S} s: {health(project)}\n{logs.stdout[-3000:]}")
        print(f"compose subset healthy {time.monotonic() - started:.0f} s after `up`", file=sys.stderr)
        yield {**ports, "project": project}
    finally:
        subprocess.run([*compose, "down", "--timeout", "5", "--remove-orphans"], capture_output=True, env=env,
                       timeout=600, check=False)
        assert not project_containers(project), "containers left behind"


def test_the_runtime_answers_its_golden_rows(stack: dict[str, str]) -> None:
    from bench.models.catalog import get_spec
    from bench.models.registry import resolve

    model = resolve(get_spec(MODEL))
    codec = codec_for("kserve-v1")
    body = get(f"http://127.0.0.1:{stack['SERVEBENCH_FASTAPI_PORT']}/predict", codec.encode(model.golden_inputs, MODEL),
               {"Content-Type": codec.content_type})
    np.testing.assert_allclose(codec.decode(body), model.golden_outputs, atol=1e-6)


def test_the_mlflow_ui_shows_the_harness_registry(stack: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{stack['SERVEBENCH_MLFLOW_UI_PORT']}"
    assert b"<html" in get(base + "/").lower()
    models = json.loads(get(base + "/api/2.0/mlflow/registered-models/search"))
    assert MODEL in {entry["name"] for entry in models["registered_models"]}


def test_a_swarm_through_the_locust_master_reaches_the_runtime_from_the_worker(stack: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{stack['SERVEBENCH_LOCUST_PORT']}"
    assert b"runtime" in get(base + "/")  # the Runtime field of the start form
    host = f"http://127.0.0.1:{stack['SERVEBENCH_FASTAPI_PORT']}"
    started = json.loads(get(base + "/swarm", f"user_count=3&spawn_rate=3&host={host}".encode()))
    assert started["success"], started
    try:
        time.sleep(6)
        stats = json.loads(get(base + "/stats/requests"))
    finally:
        get(base + "/stop", b"")
    [row] = [row for row in stats["stats"] if row["name"] != "Aggregated"]
    assert row["name"] == "fastapi /predict"
    assert row["num_requests"] > 20 and row["num_failures"] == 0, (row, stats["errors"])
    assert [worker["user_count"] for worker in stats["workers"]] == [3]
