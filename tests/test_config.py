"""Runtime specs load or fail with a message naming the file and field; CPU lists, placeholders, CPU plans."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.config import (
    KNOWN_PLACEHOLDERS,
    PLACEHOLDER,
    RuntimeSpec,
    available_runtimes,
    load_runtime,
    load_runtimes,
    runtimes_dir,
    split_names,
)
from bench.errors import BenchError
from bench.knobs import knob_placeholders
from bench.processes import parse_cpu_list
from bench.protocols import CODECS
from bench.targets import launch
from bench.targets.launch import default_cpu_plan, render

SHIPPED = {"bentoml", "fastapi", "mlflow", "mlserver"}

VALID = """\
name: my-runtime
description: a user's own runtime
protocol: v2
command: ["{python}", "-m", "my_server", "--port", "{port}", "--grpc-port", "{free_port_1}"]
env:
  MODEL_DIR: "{model_dir}"
readiness_path: /v2/health/ready
predict_path: /v2/models/{model_name}/infer
"""


def _runtime_folder(root: Path, text: str, name: str = "my-runtime") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runtime.yaml").write_text(text)
    return folder


def _without(key: str) -> str:
    """VALID without one top-level key (and the indented lines under it)."""
    kept: list[str] = []
    skipping = False
    for line in VALID.splitlines():
        if not line.startswith(" "):
            skipping = line.startswith(f"{key}:")
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _with(key: str, value: str) -> str:
    """VALID with one top-level key set to a YAML value (added when absent)."""
    return _without(key) + f"{key}: {value}\n"


@pytest.fixture
def counted_ports(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Replace free_port with a counter so allocations are visible and deterministic."""
    handed_out: list[int] = []

    def fake_free_port(host: str = "127.0.0.1") -> int:
        handed_out.append(50_001 + len(handed_out))
        return handed_out[-1]

    monkeypatch.setattr(launch, "free_port", fake_free_port)
    yield handed_out


# ---- shipped runtimes -----------------------------------------------------------------------------


def test_all_shipped_runtimes_are_discovered() -> None:
    assert set(available_runtimes()) >= SHIPPED
    assert available_runtimes() == sorted(available_runtimes())


@pytest.mark.parametrize("name", available_runtimes())
def test_shipped_runtime_loads(name: str) -> None:
    spec = load_runtime(name)
    assert isinstance(spec, RuntimeSpec)
    assert spec.name == name
    assert spec.folder == (runtimes_dir() / name).resolve()
    assert spec.protocol in CODECS
    assert spec.requirements_file.is_file()
    for file in spec.serving_code:
        assert (spec.folder / file).is_file(), f"{name}: serving_code names missing {file}"


@pytest.mark.parametrize("name", available_runtimes())
def test_shipped_runtime_templates_render_completely(name: str, counted_ports: list[int]) -> None:
    spec = load_runtime(name)
    values = {key: f"<{key}>" for key in KNOWN_PLACEHOLDERS} | knob_placeholders(spec.config)
    rendered = [render(part, values) for part in spec.command]
    rendered += [render(value, values) for value in spec.env.values()]
    rendered += [render(spec.readiness_path, values), render(spec.predict_path, values)]
    leftovers = [text for text in rendered if PLACEHOLDER.search(text)]
    assert not leftovers
    assert "<port>" in " ".join(rendered), f"{name} never receives the port the harness probes"


def test_runtime_facts_for_kserve_and_compose_live_in_runtime_yaml() -> None:
    stock = load_runtime("mlserver").kserve.stock
    assert stock is not None
    assert (stock.cluster_runtime, stock.model_format, stock.protocol_version, stock.protocol, stock.port) == (
        "kserve-mlserver", "mlflow", "v2", "v2", 8080)
    assert stock.predict_path == "/v2/models/{model_name}/infer"
    assert [load_runtime(name).kserve.stock for name in ("mlflow", "fastapi", "bentoml")] == [None, None, None]
    assert [(p.name, p.port) for p in load_runtime("mlserver").compose.extra_ports] == [("grpc", 18091),
                                                                                       ("metrics", 18092)]


def test_both_blocks_are_optional(tmp_path: Path) -> None:
    spec = load_runtime(str(_runtime_folder(tmp_path, VALID)))
    assert spec.kserve.stock is None and spec.compose.port is None and spec.compose.extra_ports == []


def test_load_runtimes_all_loads_every_shipped_runtime() -> None:
    assert [spec.name for spec in load_runtimes("all")] == available_runtimes()


# ---- a user's runtime folder given by path ------------------------------------------------------------


def test_runtime_folder_by_absolute_path_loads(tmp_path: Path) -> None:
    folder = _runtime_folder(tmp_path, VALID)
    spec = load_runtime(str(folder))
    assert spec.name == "my-runtime"
    assert spec.protocol == "v2"
    assert spec.folder == folder.resolve()
    assert spec.requirements_file == folder.resolve() / "requirements.txt"
    assert spec.command[-1] == "{free_port_1}"
    assert spec.env == {"MODEL_DIR": "{model_dir}"}
    # defaults
    assert spec.startup_timeout_s == 120.0
    assert spec.settings == {}
    assert spec.serving_code == []


def test_runtime_folder_by_relative_path_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _runtime_folder(tmp_path, VALID)
    monkeypatch.chdir(tmp_path)
    assert load_runtime("./my-runtime").folder == (tmp_path / "my-runtime").resolve()


def test_runtime_folder_without_runtime_yaml_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"no runtime\.yaml") as caught:
        load_runtime(str(tmp_path))
    assert str(tmp_path) in caught.value.message
    assert caught.value.hint


def test_comma_list_mixes_names_and_paths(tmp_path: Path) -> None:
    folder = _runtime_folder(tmp_path, VALID)
    specs = load_runtimes(f"fastapi, {folder}")
    assert [spec.name for spec in specs] == ["fastapi", "my-runtime"]


# ---- bad runtime.yaml files ---------------------------------------------------------------------------

STOCK = "{stock: {cluster_runtime: kserve-x, model_format: m, protocol_version: %s, protocol: %s, " \
        "predict_path: %s, readiness_path: /r}}"
BAD_FIELDS = {
    # case: (runtime.yaml text, field named in the message, other text the message must hold)
    "unknown field": (_with("wokers", "2"), "wokers", "Extra inputs"),
    "missing required field": (_without("protocol"), "protocol", "required"),
    "missing command": (_without("command"), "command", "required"),
    "unknown protocol": (_with("protocol", "grpc"), "protocol", "unknown protocol 'grpc'"),
    "unknown placeholder in command": (_with("command", '["{pyton}", "{port}"]'), "command", "'{pyton}'"),
    "unknown placeholder in env": (_with("env", '{A: "{model}"}'), "env", "'{model}'"),
    "unknown placeholder in path": (_with("predict_path", "/v2/{name}/infer"), "predict_path", "'{name}'"),
    "free_port_0 is not a placeholder": (_with("env", '{A: "{free_port_0}"}'), "env", "'{free_port_0}'"),
    "empty command": (_with("command", "[]"), "command", "at least 1"),
    "command not a list": (_with("command", "python -m server"), "command", "list"),
    "path without leading slash": (_with("readiness_path", "ready"), "readiness_path", "pattern"),
    "bad name": (_with("name", "My Runtime"), "name", "pattern"),
    "non-positive timeout": (_with("startup_timeout_s", "0"), "startup_timeout_s", "greater than 0"),
    "non-string env value": (_with("env", "{WORKERS: 2}"), "env.WORKERS", "string"),
    # the kserve: and compose: blocks
    "unknown kserve field": (_with("kserve", "{stok: {}}"), "kserve.stok", "Extra inputs"),
    "stock protocol version": (_with("kserve", STOCK % ("v3", "v2", "/p")), "kserve.stock.protocol_version", "'v2'"),
    "stock protocol": (_with("kserve", STOCK % ("v2", "grpc", "/p")), "kserve.stock.protocol", "unknown protocol"),
    "stock path placeholder": (_with("kserve", STOCK % ("v2", "v2", "'/{port}'")), "kserve.stock.predict_path",
                               "'{port}'; a stock runtime's paths know only {model_name}"),
    "stock without its runtime": (_with("kserve", "{stock: {model_format: m, protocol_version: v2, protocol: v2, "
                                                  "predict_path: /p, readiness_path: /r}}"),
                                  "kserve.stock.cluster_runtime", "required"),
    "compose port out of range": (_with("compose", "{port: 70000}"), "compose.port", "65535"),
    "compose extra port name": (_with("compose", "{extra_ports: [{name: Grpc, port: 1}]}"),
                                "compose.extra_ports.0.name", "pattern"),
    "unknown compose field": (_with("compose", "{prot: 1}"), "compose.prot", "Extra inputs"),
}


@pytest.mark.parametrize(("text", "field", "detail"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_field_names_file_and_field(tmp_path: Path, text: str, field: str, detail: str) -> None:
    folder = _runtime_folder(tmp_path, text)
    with pytest.raises(BenchError) as caught:
        load_runtime(str(folder))
    message = caught.value.message
    assert str(folder / "runtime.yaml") in message
    assert f"field '{field}'" in message
    assert detail in message
    assert "\n" not in message
    assert caught.value.hint


def test_unknown_protocol_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as caught:
        load_runtime(str(_runtime_folder(tmp_path, _with("protocol", "grpc"))))
    for name in CODECS:
        assert name in caught.value.message


def test_unknown_placeholder_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as caught:
        load_runtime(str(_runtime_folder(tmp_path, _with("command", '["{pyton}"]'))))
    for name in KNOWN_PLACEHOLDERS:
        assert name in caught.value.message


def test_several_problems_are_counted_in_the_hint(tmp_path: Path) -> None:
    text = _with("protocol", "grpc").replace("/v2/health/ready", "ready") + "wokers: 1\n"
    with pytest.raises(BenchError) as caught:
        load_runtime(str(_runtime_folder(tmp_path, text)))
    assert caught.value.hint is not None and "3 problem(s)" in caught.value.hint


MALFORMED_YAML = {
    "unclosed flow list": "name: [unclosed\n",
    "bad indentation": "name: x\n  protocol: v2\n command: [a]\n",
    "tab indentation": "name: x\nenv:\n\tA: b\n",
    "unclosed quote": 'name: "x\n',
}


@pytest.mark.parametrize("text", MALFORMED_YAML.values(), ids=MALFORMED_YAML.keys())
def test_malformed_yaml_names_the_file_and_line(tmp_path: Path, text: str) -> None:
    folder = _runtime_folder(tmp_path, text)
    with pytest.raises(BenchError) as caught:
        load_runtime(str(folder))
    assert str(folder / "runtime.yaml") in caught.value.message
    assert "malformed YAML at line " in caught.value.message
    assert caught.value.hint


NOT_A_MAPPING = {"list": "- name\n- protocol\n", "scalar": "just some text\n", "empty file": "", "null": "~\n"}


@pytest.mark.parametrize("text", NOT_A_MAPPING.values(), ids=NOT_A_MAPPING.keys())
def test_non_mapping_names_the_file(tmp_path: Path, text: str) -> None:
    folder = _runtime_folder(tmp_path, text)
    with pytest.raises(BenchError, match="expected a mapping at the top level") as caught:
        load_runtime(str(folder))
    assert str(folder / "runtime.yaml") in caught.value.message


# ---- unknown names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "fastapi2", "FastAPI", "all"])
def test_unknown_runtime_hint_lists_valid_names(name: str) -> None:
    with pytest.raises(BenchError) as caught:
        load_runtime(name)
    assert caught.value.message == f"unknown runtime '{name}'"
    hint = caught.value.hint
    assert hint is not None
    for valid in available_runtimes():
        assert valid in hint
    assert "all" in hint and "path" in hint


def test_unknown_runtime_in_a_list_is_rejected() -> None:
    with pytest.raises(BenchError, match="unknown runtime 'nope'"):
        load_runtimes("fastapi,nope")


# ---- split_names ----------------------------------------------------------------------------------


def test_split_names_all_is_every_valid_name_as_a_copy() -> None:
    valid = ["a", "b", "c"]
    names = split_names("all", valid, "thing")
    assert names == valid
    names.append("d")
    assert valid == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("b", ["b"]), ("b,a", ["b", "a"]), (" a , c ", ["a", "c"]), ("a,,c,", ["a", "c"])],
)
def test_split_names_comma_list_keeps_order_and_drops_blanks(value: str, expected: list[str]) -> None:
    assert split_names(value, ["a", "b", "c"], "thing") == expected


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_split_names_empty_is_rejected_with_the_valid_names(value: str) -> None:
    with pytest.raises(BenchError, match="no thing given") as caught:
        split_names(value, ["a", "b"], "thing")
    assert caught.value.hint == "valid: a, b, all"


# ---- CPU lists, placeholders, CPU plans -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", (1,)), ("0,2", (0, 2)), ("2-3", (2, 3)), ("3,0-1", (0, 1, 3)), (" 4 , 1-2 ", (1, 2, 4)),
     ("1,1,0-1", (0, 1)), ("5-5", (5,))],
)
def test_parse_cpu_list(text: str, expected: tuple[int, ...]) -> None:
    assert parse_cpu_list(text) == expected


@pytest.mark.parametrize("text", ["", ",", "x", "1,a", "1-", "-1", "a-b", "1-2-3", "1.5", "3-1"])
def test_parse_cpu_list_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_list(text)


def test_render_fills_placeholders_and_leaves_other_braces() -> None:
    values = {"host": "127.0.0.1", "port": "8080", "model_name": "iris-logreg"}
    assert render("{host}:{port}", values) == "127.0.0.1:8080"
    assert render("/v2/models/{model_name}/infer", values) == "/v2/models/iris-logreg/infer"
    assert render("no placeholders", values) == "no placeholders"
    assert render('{"a": 1}', values) == '{"a": 1}'


def test_render_allocates_each_free_port_once(counted_ports: list[int]) -> None:
    values = {"port": "8080"}
    assert render("{free_port_1} {free_port_1} {port}", values) == "50001 50001 8080"
    assert render("--grpc {free_port_1} --metrics {free_port_2}", values) == "--grpc 50001 --metrics 50002"
    assert render("{free_port_2}", values) == "50002"
    assert counted_ports == [50001, 50002]
    assert values == {"port": "8080", "free_port_1": "50001", "free_port_2": "50002"}


def test_render_free_port_is_a_real_port() -> None:
    values: dict[str, str] = {}
    port = int(render("{free_port_3}", values))
    assert 0 < port < 65536
    assert render("{free_port_3}", values) == str(port)


@pytest.mark.parametrize(
    ("affinity", "server", "generator"),
    [({0, 1, 2, 3}, (3,), (0, 1, 2)), ({2, 5}, (5,), (2,)), ({7}, (7,), (7,))],
)
def test_default_cpu_plan(monkeypatch: pytest.MonkeyPatch, affinity: set[int], server: tuple[int, ...],
                          generator: tuple[int, ...]) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: affinity)
    plan = default_cpu_plan()
    assert (plan.server, plan.generator) == (server, generator)
    assert set(plan.server) | set(plan.generator) == affinity
    if len(affinity) > 1:
        assert not set(plan.server) & set(plan.generator)
    assert plan.as_dict() == {"server_cpus": list(server), "generator_cpus": list(generator)}


def test_folder_key_is_a_bench_error(tmp_path: Path) -> None:
    folder = _runtime_folder(tmp_path, VALID + "folder: elsewhere\n")
    with pytest.raises(BenchError, match="folder"):
        load_runtime(str(folder))


def test_non_string_key_is_a_bench_error(tmp_path: Path) -> None:
    folder = _runtime_folder(tmp_path, VALID + "1: one\n")
    with pytest.raises(BenchError) as caught:
        load_runtime(str(folder))
    assert str(folder / "runtime.yaml") in caught.value.message


def test_non_utf8_runtime_yaml_is_a_bench_error(tmp_path: Path) -> None:
    folder = tmp_path / "my-runtime"
    folder.mkdir()
    (folder / "runtime.yaml").write_bytes(b"\xff\xfename: x\n")
    with pytest.raises(BenchError) as caught:
        load_runtime(str(folder))
    assert str(folder / "runtime.yaml") in caught.value.message
