"""docker-compose.yml with the runtime services `bench compose prepare` generates from the runtime folders,
the env file it writes, the Locust image's contents, and the interactive locustfile mode's target choice
(pure logic: no daemon, no Locust)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bench.config import RuntimeSpec, available_runtimes, load_runtime, load_runtimes
from bench.errors import BenchError
from bench.load.bodies import request_bodies
from bench.load.interactive import Target, choose_target, load_rows, parse_targets
from bench.protocols import codec_for
from bench.provision.image_layout import image_layout
from bench.targets.compose import (
    AUTO_PORTS_FROM,
    LOCUSTFILE,
    RUNTIMES_FILE,
    Prepared,
    bench_imports,
    compose_file,
    default_ports,
    env_values,
    link_models,
    locust_image_source,
    next_steps,
    render_env,
    render_runtimes_file,
    runtimes_file,
    variable_stem,
    write_env,
)
from bench.targets.launch import CpuPlan, render_launch

VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")
MODEL = "digits-mlp"
RUNTIMES = available_runtimes()


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, enough to read the file as compose would."""

    def fill(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if name in env:
            return env[name]
        if kind == "-":
            return rest
        raise KeyError(f"{name} is required ({rest})")

    return re.sub(r"\$\$", "$", VARIABLE.sub(fill, text))


def interpolated(node: Any, env: dict[str, str]) -> Any:
    """A parsed compose file with every string interpolated, as compose does (after parsing, so a value
    stays a string: compose converts cpus, scale and the like itself)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def loaded(text: str) -> dict[str, Any]:
    return dict(interpolated(yaml.safe_load(text), sample_env()))


def generated_text() -> str:
    return render_runtimes_file(load_runtimes("all"), compose_file().read_text()).text


def both_files() -> str:
    return compose_file().read_text() + generated_text()


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Services of two compose files as compose combines them: mappings (environment) merged, the rest replaced."""
    services = {name: dict(service) for name, service in base["services"].items()}
    for name, service in override["services"].items():
        combined = services.setdefault(name, {})
        for key, value in service.items():
            both = isinstance(value, dict) and isinstance(combined.get(key), dict)
            combined[key] = {**combined[key], **value} if both else value
    return services


def sample_env() -> dict[str, str]:
    images = {name: f"servebench/{name}:0123456789abcdef" for name in (*RUNTIMES, "locust")}
    return env_values(MODEL, images, CpuPlan((1,), (0,)), "4g", 2, (1000, 1000), Path("/srv/state"))


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    base, generated = loaded(compose_file().read_text()), loaded(generated_text())
    assert base["version"] == generated["version"] == "2.4"  # compose 1.29 wants one version in all files
    return merged(base, generated)


def test_the_env_file_supplies_every_variable_the_compose_files_require() -> None:
    without_default = {name for name, kind, _ in VARIABLE.findall(both_files()) if kind != "-"}
    assert without_default <= set(sample_env()), without_default - set(sample_env())


def test_the_env_file_names_both_compose_files_and_every_runtime_image() -> None:
    env = sample_env()
    assert env["COMPOSE_FILE"].split(":") == [str(compose_file()), str(runtimes_file())]
    assert runtimes_file().name == RUNTIMES_FILE and runtimes_file().parent == compose_file().parent
    assert RUNTIMES_FILE in (compose_file().parent / ".gitignore").read_text()
    for runtime in RUNTIMES:
        assert env[f"SERVEBENCH_{variable_stem(runtime)}_IMAGE"].startswith(f"servebench/{runtime}:")


def test_docker_compose_yml_names_no_runtime_service(services: dict[str, Any]) -> None:
    base = yaml.safe_load(compose_file().read_text())
    assert set(base["services"]) == {"mlflow-server", "locust-master", "locust-worker"}
    assert set(services) == {*base["services"], *RUNTIMES}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_service_runs_its_runtime_yaml_on_its_own_loopback_port(services: dict[str, Any],
                                                                            runtime: str) -> None:
    spec = load_runtime(runtime)
    service = services[runtime]
    assert spec.compose.port is not None  # every shipped runtime names its ports
    values = image_layout(spec).values("127.0.0.1", spec.compose.port)
    values.update({f"free_port_{n}": str(extra.port) for n, extra in enumerate(spec.compose.extra_ports, 1)})
    launch = render_launch(spec, MODEL, values)
    assert service["command"] == launch.command
    environment = {key: str(value) for key, value in service["environment"].items()}
    assert launch.env.items() <= environment.items()
    assert environment["OMP_NUM_THREADS"] == "1"
    assert service["image"] == f"servebench/{runtime}:0123456789abcdef"
    assert service["network_mode"] == "host"
    assert (service["cpuset"], str(service["cpus"]), service["mem_limit"]) == ("1", "1", "4g")
    [mount] = service["volumes"]
    assert mount == {"type": "bind", "source": f"/srv/state/compose/models/{MODEL}/model",
                     "target": image_layout(spec).model_dir, "read_only": True}
    probe = " ".join(service["healthcheck"]["test"])
    assert launch.endpoint.readiness_url in probe


def test_runtime_ports_are_distinct_and_every_server_binds_loopback(services: dict[str, Any]) -> None:
    ports = default_ports(both_files(), {})
    assert len(set(ports.values())) == len(ports) >= 9
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        command = " ".join(service["command"])
        assert "0.0.0.0" not in command and "0.0.0.0" not in str(service.get("environment")), name


def test_locust_targets_match_the_runtime_services(services: dict[str, Any]) -> None:
    targets = parse_targets(services["locust-worker"]["environment"]["SERVEBENCH_TARGETS"])
    ports = default_ports(both_files(), {})
    assert list(targets) == list(RUNTIMES)
    for runtime, target in targets.items():
        spec = load_runtime(runtime)
        launch = render_launch(spec, MODEL, image_layout(spec).values("127.0.0.1", ports[
            f"SERVEBENCH_{variable_stem(runtime)}_PORT"]) | {"free_port_1": "1", "free_port_2": "2"})
        assert (target.protocol, target.base_url, target.predict_path) == (
            spec.protocol, launch.endpoint.base_url, launch.endpoint.predict_path)


def test_locust_master_and_workers_share_one_configuration(services: dict[str, Any]) -> None:
    master, worker = services["locust-master"], services["locust-worker"]
    assert master["environment"] == worker["environment"] and master["volumes"] == worker["volumes"]
    assert "--master" in master["command"] and "--worker" in worker["command"]
    assert master["command"][master["command"].index("--web-host") + 1] == "127.0.0.1"
    assert master["command"][master["command"].index("--master-bind-host") + 1] == "127.0.0.1"
    assert worker["scale"] == "2" and worker["depends_on"]["locust-master"]["condition"] == "service_healthy"
    assert master["cpuset"] == "0"


def test_the_mlflow_server_reads_the_harness_store_at_its_host_path(services: dict[str, Any]) -> None:
    server = services["mlflow-server"]
    command = server["command"]
    assert command[command.index("--backend-store-uri") + 1] == "sqlite:////srv/state/mlflow.db"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert server["volumes"] == [{"type": "bind", "source": "/srv/state", "target": "/srv/state"}]
    assert server["user"] == "1000:1000"


def test_the_shipped_runtimes_keep_their_documented_host_ports() -> None:
    ports = default_ports(both_files(), {})
    assert {key: port for key, port in ports.items() if key.startswith(("SERVEBENCH_ML", "SERVEBENCH_FA",
                                                                         "SERVEBENCH_BE"))} == {
        "SERVEBENCH_MLSERVER_PORT": 18081, "SERVEBENCH_MLFLOW_PORT": 18082, "SERVEBENCH_FASTAPI_PORT": 18083,
        "SERVEBENCH_BENTOML_PORT": 18084, "SERVEBENCH_MLSERVER_GRPC_PORT": 18091,
        "SERVEBENCH_MLSERVER_METRICS_PORT": 18092, "SERVEBENCH_MLFLOW_UI_PORT": 18080}


# ---- generating the runtime services from runtime folders ------------------------------------------


def copied_runtime(tmp_path: Path, source: str, name: str, compose: str | None = None) -> RuntimeSpec:
    """A copy of a shipped runtime folder under a new name, its compose block replaced (or dropped)."""
    folder = tmp_path / name
    shutil.copytree(load_runtime(source).folder, folder)
    text = (folder / "runtime.yaml").read_text().replace(f"name: {source}\n", f"name: {name}\n")
    text = text[:text.index("\ncompose:") + 1] if "\ncompose:" in text else text
    (folder / "runtime.yaml").write_text(text + (f"compose: {compose}\n" if compose else ""))
    return load_runtime(str(folder))


def render(specs: list[RuntimeSpec]) -> dict[str, Any]:
    return dict(yaml.safe_load(render_runtimes_file(specs, compose_file().read_text()).text)["services"])


def test_a_runtime_without_compose_ports_gets_free_ones_above_the_named_ones(tmp_path: Path) -> None:
    shipped = load_runtimes("all")
    copy = copied_runtime(tmp_path, "mlserver", "mlserver-copy")
    generated = render_runtimes_file([*shipped, copy], compose_file().read_text())
    ports = generated.ports["mlserver-copy"]
    assert [(port.variable, port.default) for port in ports.values()] == [
        ("SERVEBENCH_MLSERVER_COPY_PORT", AUTO_PORTS_FROM),
        ("SERVEBENCH_MLSERVER_COPY_FREE1_PORT", AUTO_PORTS_FROM + 1),
        ("SERVEBENCH_MLSERVER_COPY_FREE2_PORT", AUTO_PORTS_FROM + 2)]
    environment = yaml.safe_load(generated.text)["services"]["mlserver-copy"]["environment"]
    assert environment["MLSERVER_GRPC_PORT"] == "${SERVEBENCH_MLSERVER_COPY_FREE1_PORT:-18101}"
    named = sum(1 + len(spec.compose.extra_ports) for spec in shipped)  # every shipped runtime names its ports
    infrastructure = 3  # the MLflow UI, Locust's web UI and its master
    assert len(set(default_ports(compose_file().read_text() + generated.text, {}).values())) == \
        infrastructure + named + len(ports)


@pytest.mark.parametrize(("compose", "field", "says"), [
    ("{port: 18083}", "compose.port", "host port 18083 is fastapi's SERVEBENCH_FASTAPI_PORT too"),
    ("{port: 8089}", "compose.port", "docker-compose.yml's SERVEBENCH_LOCUST_PORT"),
])
def test_a_host_port_claimed_twice_names_the_runtime_yaml_and_field(tmp_path: Path, compose: str, field: str,
                                                                     says: str) -> None:
    copy = copied_runtime(tmp_path, "fastapi", "fastapi-copy", compose)
    with pytest.raises(BenchError) as caught:
        render([*load_runtimes("all"), copy])
    assert caught.value.message.startswith(f"{copy.folder / 'runtime.yaml'}: field '{field}': ")
    assert says in caught.value.message and caught.value.hint


def test_runtime_names_that_share_compose_variables_or_services_are_refused(tmp_path: Path) -> None:
    one, other = copied_runtime(tmp_path, "fastapi", "my-server"), copied_runtime(tmp_path, "fastapi", "my_server")
    with pytest.raises(BenchError, match="SERVEBENCH_MY_SERVER_PORT is my-server's too"):
        render([one, other])
    with pytest.raises(BenchError, match=r"field 'name': 'locust-master' is the name of a docker-compose\.yml service"):
        render([copied_runtime(tmp_path, "fastapi", "locust-master")])
    with pytest.raises(BenchError, match=r"SERVEBENCH_LOCUST_PORT is docker-compose\.yml's too"):
        render([copied_runtime(tmp_path, "fastapi", "locust")])  # its image variable would be Locust's


def test_a_literal_dollar_in_runtime_yaml_reaches_the_server_as_is(tmp_path: Path) -> None:
    spec = copied_runtime(tmp_path, "fastapi", "dollar")
    spec = spec.model_copy(update={"env": {**spec.env, "PRICE": "$5 and $HOME"}})
    service = render([spec])["dollar"]
    assert service["environment"]["PRICE"] == "$$5 and $$HOME"  # compose turns $$ back into $
    assert interpolate(service["environment"]["PRICE"], {}) == "$5 and $HOME"


def test_next_steps_print_every_runtime_url(tmp_path: Path) -> None:
    prepared = Prepared(tmp_path / "x.env", {"SERVEBENCH_MODEL": MODEL}, [],
                        {**default_ports(both_files(), {}), "SERVEBENCH_FASTAPI_COPY_PORT": 18100},
                        [*RUNTIMES, "fastapi-copy"])
    text = next_steps(prepared)
    assert f"--env-file {tmp_path / 'x.env'} up -d" in text
    for runtime, port in [("mlserver", 18081), ("bentoml", 18084), ("fastapi-copy", 18100), ("Locust", 8089)]:
        assert re.search(rf"^  {re.escape(runtime)} +http://127.0.0.1:{port}$", text, re.MULTILINE), text


# ---- env file and model links ----------------------------------------------------------------------


def test_env_file_is_key_value_lines_under_a_header(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    write_env(path, sample_env())
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert dict(line.split("=", 1) for line in lines) == sample_env()
    write_env(path, sample_env())  # its own file is rewritten


def test_a_users_own_env_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("MY_SETTING=1\n")
    with pytest.raises(BenchError, match="not written by"):
        write_env(path, sample_env())
    assert path.read_text() == "MY_SETTING=1\n"


def test_values_with_spaces_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="spaces"):
        write_env(tmp_path / ".env", {**sample_env(), "SERVEBENCH_HOME": "/my state"})


def test_ports_come_from_the_environment_else_the_compose_defaults() -> None:
    text = "a: ${SERVEBENCH_FOO_PORT:-100} b: ${SERVEBENCH_BAR_PORT:-200} c: ${OTHER:-1}"
    assert default_ports(text, {"SERVEBENCH_BAR_PORT": "250"}) == {"SERVEBENCH_FOO_PORT": 100,
                                                                    "SERVEBENCH_BAR_PORT": 250}
    assert "COMPOSE_HTTP_TIMEOUT=600" in render_env(sample_env())


def test_model_links_point_at_the_local_copy_and_are_replaced(tmp_path: Path) -> None:
    class Local:
        def __init__(self, name: str, model_dir: Path) -> None:
            self.name, self.model_dir = name, model_dir

    for version in ("v1", "v2"):
        (tmp_path / "models" / "m" / version / "model").mkdir(parents=True)
        link_models([Local("m", tmp_path / "models" / "m" / version / "model")], tmp_path / "compose")  # type: ignore[list-item]
        link = tmp_path / "compose" / "m"
        assert link.is_symlink() and not Path(link.readlink()).is_absolute()
        assert link.resolve() == (tmp_path / "models" / "m" / version).resolve()


# ---- the Locust image ------------------------------------------------------------------------------


def test_the_locust_image_holds_every_bench_module_the_locustfile_imports_and_nothing_heavy() -> None:
    names = {path.relative_to(LOCUSTFILE.parents[2]).as_posix() for path in bench_imports(LOCUSTFILE)}
    assert {"bench/__init__.py", "bench/load/__init__.py", "bench/load/locustfile.py", "bench/load/planned_user.py",
            "bench/load/web_user.py", "bench/load/interactive.py", "bench/load/bodies.py", "bench/load/plan.py",
            "bench/load/schedule.py", "bench/protocols.py"} <= names
    assert not {"bench/cli.py", "bench/config.py", "bench/models/registry.py", "bench/stats.py"} & names
    source = locust_image_source()
    assert [name for name, _ in source.files[:2]] == ["Dockerfile", "requirements.txt"]
    assert names <= {name for name, _ in source.files} and source.folder is None
    pins = source.requirements_file.read_text()
    assert "locust==2.47.0" in pins and "numpy==" in pins and "mlflow" not in pins


def test_the_locust_images_modules_import_only_what_its_requirements_install() -> None:
    """The image pins Locust, numpy, grpc and protobuf: a generator module importing the harness's heavier
    libraries (pandas, pydantic, ...) fails in a worker pod and in compose's Locust, not here."""
    probe = ("import sys, bench.load.planned_user, bench.load.worker, bench.load.remote_worker; "
             "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                timeout=60).stdout.split())
    assert {"locust", "numpy", "gevent"} <= loaded
    assert not loaded & {"pandas", "pyarrow", "pydantic", "yaml", "mlflow", "sklearn", "torch", "matplotlib",
                         "rich", "scipy"}


def test_the_locust_image_context_is_staged_with_exactly_its_files() -> None:
    source = locust_image_source()
    with source.context() as context:
        staged = {path.relative_to(context).as_posix() for path in context.rglob("*") if path.is_file()}
        assert staged == {name for name, _ in source.files}
    assert not context.exists()
    tag = source.tag("base", offline=True)
    assert tag.startswith("servebench/locust:") and tag == source.tag("base", offline=True) != source.tag(
        "base", offline=False)


# ---- interactive locustfile mode -------------------------------------------------------------------

TARGETS_TEXT = """
mlserver v2 http://127.0.0.1:18081/v2/models/digits-mlp/infer
fastapi  kserve-v1   http://127.0.0.1:18083/predict
"""


def test_targets_parse_one_per_line_or_semicolon() -> None:
    targets = parse_targets(TARGETS_TEXT)
    assert targets["mlserver"] == Target("mlserver", "v2", "http://127.0.0.1:18081", "/v2/models/digits-mlp/infer")
    assert targets["fastapi"].base_url == "http://127.0.0.1:18083"
    assert parse_targets("a kserve-v1 http://h:1/p; b v2 https://h:2/q?x=1")["b"].predict_path == "/q?x=1"


@pytest.mark.parametrize(("text", "problem"), [
    ("", "names no runtime"), ("fastapi kserve-v1", "expected 'name protocol predict-URL'"),
    ("fastapi grpc http://h:1/p", "unknown protocol"), ("fastapi v2 127.0.0.1:1/p", "not an http"),
])
def test_malformed_targets_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_targets(text)


def test_host_picks_the_runtime_by_url() -> None:
    targets = parse_targets(TARGETS_TEXT)
    assert choose_target(targets, "http://127.0.0.1:18081/", "fastapi").name == "mlserver"
    assert choose_target(targets, " http://127.0.0.1:18083 ", None).name == "fastapi"


def test_empty_host_uses_the_runtime_field() -> None:
    targets = parse_targets(TARGETS_TEXT)
    assert choose_target(targets, "", "mlserver") == targets["mlserver"]
    assert choose_target(targets, None, "fastapi") == targets["fastapi"]


def test_an_unknown_host_speaks_the_named_runtimes_protocol() -> None:
    target = choose_target(parse_targets(TARGETS_TEXT), "http://10.0.0.5:9000", "mlserver")
    assert (target.base_url, target.protocol, target.predict_path) == (
        "http://10.0.0.5:9000", "v2", "/v2/models/digits-mlp/infer")


def test_no_usable_host_or_runtime_is_an_error_listing_the_runtimes() -> None:
    with pytest.raises(ValueError, match=r"fastapi \(http://127.0.0.1:18083\)"):
        choose_target(parse_targets(TARGETS_TEXT), "http://10.0.0.5:9000", "nope")
    with pytest.raises(ValueError, match="Runtime field"):
        choose_target(parse_targets(TARGETS_TEXT), "", None)


def test_rows_load_from_golden_npz_or_npy(tmp_path: Path) -> None:
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.savez(tmp_path / "golden.npz", inputs=rows, outputs=rows[:, :1])
    np.save(tmp_path / "rows.npy", rows)
    for name in ("golden.npz", "rows.npy"):
        loaded = load_rows(tmp_path / name)
        assert loaded.dtype == np.float32 and np.array_equal(loaded, rows)


def test_request_bodies_draw_the_same_seeded_rows_as_the_load_plans_always_did() -> None:
    rows = np.arange(40, dtype=np.float64).reshape(10, 4)
    bodies = request_bodies(rows, "kserve-v1", "m", batch_size=3, count=5, seed=7)
    rng = np.random.default_rng(7)
    expected = [codec_for("kserve-v1").encode(rows[rng.choice(10, size=3, replace=False)], "m") for _ in range(5)]
    assert bodies == expected
    assert len(request_bodies(rows[:2], "v2", "m", batch_size=4, count=1)[0]) > 0  # fewer rows than a batch
