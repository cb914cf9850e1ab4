"""Usage errors: exit code 2, one `error:` line with a hint on stderr, no traceback, and no server started.

Every case here fails validation before cmd_check reaches the environments or the target; a guard makes
the in-process tests fail loudly if that order ever changes. Output width is pinned to 80 columns (a CI
log, a pipe), where rich's wrapping matters.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import bench.measure.check
import bench.measure.run
import bench.provision.envs
from bench.cli import build_parser, console, main
from bench.errors import BenchError
from bench.events import Message, Status
from bench.report.publish import Published
from bench.targets.factory import TARGETS, TargetOptions, make_target
from bench.targets.launch import CpuPlan
from bench.targets.local import LocalTarget

BENCH = Path(sys.executable).with_name("bench")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Case(NamedTuple):
    argv: list[str]
    says: list[str]  # fragments the error line must hold (whitespace-insensitive)


def _malformed_runtime(root: Path) -> Path:
    folder = root / "bad-runtime"
    folder.mkdir()
    (folder / "runtime.yaml").write_text("name: bad\nprotocol: [unclosed\n")
    return folder


def _case(name: str, tmp_path: Path) -> Case:
    if name == "unknown runtime":
        return Case(["check", "--runtime", "nope"],
                    ["unknown runtime 'nope'",
                     "(hint: valid: bentoml, fastapi, kserve, mlflow, mlserver, onnx, rayserve, seldon, torchserve"])
    if name == "unknown model":
        return Case(["check", "--model", "nope"], ["unknown model 'nope'", "(hint: valid: iris-logreg"])
    if name == "unknown subcommand":
        return Case(["nope"], ["invalid choice: 'nope'", "(hint: bench --help)"])
    if name == "unwritable json":
        return Case(["check", "--json", "/nonexistent-dir/x.json"],
                    ["cannot write /nonexistent-dir/x.json", "(hint: choose a path"])
    if name == "malformed runtime.yaml":
        folder = _malformed_runtime(tmp_path)
        return Case(["check", "--runtime", str(folder)],
                    [f"{folder / 'runtime.yaml'}: malformed YAML at line", "(hint: check indentation"])
    if name == "unknown scenario":
        return Case(["run", "--scenario", "nope"], ["unknown scenario 'nope'", "(hint: valid: batch, probe, ramp"])
    if name == "malformed scenario":
        path = tmp_path / "bad.yaml"
        path.write_text("name: bad\nloop: [open\n")
        return Case(["run", "--scenario", str(path)], [f"{path}: malformed YAML at line", "(hint:"])
    if name == "impossible rate":
        path = tmp_path / "fast.yaml"
        path.write_text("name: fast\nloop: open\nrate: 1000000\n")
        return Case(["run", "--scenario", str(path)], [f"{path}:", "'rate': a rate above 20000 req/s", "(hint:"])
    if name == "closed loop with a rate":
        path = tmp_path / "mixed.yaml"
        path.write_text("name: mixed\nloop: closed\nrate: 10\n")
        return Case(["run", "--scenario", str(path)], [f"{path}:", "'rate': a closed-loop scenario", "(hint:"])
    if name == "unknown run length":
        return Case(["run", "--length", "nope"], ["unknown run length 'nope'", "(hint: valid: smoke, quick, full"])
    if name == "negative seed":
        return Case(["run", "--seed", "-1"], ["--seed -1: Input should be greater than or equal to 0",
                                              "(hint: leave --seed out"])
    if name.startswith("generator processes "):
        value = name.split()[-1]
        bound = "less than or equal to 64" if value == "1000" else "greater than or equal to 1"
        return Case(["run", "--generator-processes", value], [f"--generator-processes {value}: Input should be {bound}",
                                                             "(hint: leave --generator-processes out"])
    if name.startswith("scenario "):
        field, value = name.split()[1:]
        path = tmp_path / "odd.yaml"
        load = "sweep: [10, .inf]" if field == "sweep" else f"rate: 10\n{field}: {value}"
        path.write_text(f"name: odd\nloop: open\n{load}\n")
        expected = {"seed": "greater than or equal to 0", "sweep": "finite number"}.get(field, "finite number")
        where = "sweep.1" if field == "sweep" else field
        return Case(["run", "--scenario", str(path)], [f"{path}: field '{where}'", expected, "(hint:"])
    if name == "closed sweep of infinity":
        path = tmp_path / "inf.yaml"
        path.write_text("name: inf\nloop: closed\nsweep: [.inf]\n")
        return Case(["run", "--scenario", str(path)], [f"{path}: field 'sweep.0'", "finite number", "(hint:"])
    if name == "rate x duration too large":
        path = tmp_path / "long.yaml"
        path.write_text("name: long\nloop: open\nrate: 5000\nduration_s: 7200\n")
        return Case(["run", "--scenario", str(path)], ["schedules 36,025,000 requests in one measurement",
                                                       "beyond 18,000,000", "(hint:"])
    if name == "out is a file":
        (tmp_path / "afile").write_text("x")
        return Case(["run", "--out", str(tmp_path / "afile")], ["a file, not a folder", "(hint: choose a folder"])
    if name == "bad cpu list":
        return Case(["run", "--server-cpus", "x"], ["bad CPU list", "(hint: use forms like"])
    if name == "unavailable cpu":
        return Case(["run", "--server-cpus", "999"], ["CPUs [999] are not available", "(hint: usable CPUs"])
    if name == "existing run folder":
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "results.json").write_text("{}")
        return Case(["run", "--out", str(tmp_path / "old")], ["already holds a run", "(hint: choose another"])
    if name == "tune cpu budget too big":
        return Case(["tune", "--cpus", "64"], ["--cpus 64: this machine has", "(hint: choose 1 to"])
    if name == "tune memory budget malformed":
        return Case(["tune", "--memory", "lots"], ["--memory 'lots': expected a size", "(hint: for example"])
    if name == "tune no configurations":
        return Case(["tune", "--max-configs", "0"], ["--max-configs 0: at least one", "(hint: for example"])
    url = ["run", "--target", "url", "--url", "http://127.0.0.1:9/predict"]
    if name == "url without the url target":
        return Case(["run", "--url", "http://127.0.0.1:9/predict"], ["--url applies to --target url only",
                                                                     "(hint: add --target url"])
    if name == "url target without a url":
        return Case(["run", "--target", "url"], ["--target url needs --url", "(hint: for example --url"])
    if name == "url target with another scheme":
        return Case(["run", "--target", "url", "--url", "ftp://127.0.0.1/predict", "--protocol", "v2"],
                    ["not an http:// or https:// URL", "(hint: for example"])
    if name == "url target without a protocol":
        return Case(url, ["--target url needs --protocol", "(hint: one of: kserve-v1"])
    if name == "url target with an unknown protocol":
        return Case([*url, "--protocol", "soap"], ["--protocol soap", "(hint: one of:"])
    if name == "url target with a malformed header":
        return Case([*url, "--protocol", "kserve-v1", "--header", "X-Api-Key=secret"],
                    ["not 'Name: value'", "(hint: for example --header"])
    if name == "url target with a runtime":
        return Case([*url, "--protocol", "kserve-v1", "--runtime", "fastapi"],
                    ["--runtime does not apply to --target url", "(hint: name it with --name"])
    if name == "url target insecure over http":
        return Case([*url, "--protocol", "kserve-v1", "--insecure"], ["apply to https:// URLs only", "(hint:"])
    if name == "tune with the url target":
        return Case(["tune", "--target", "url", "--url", "http://127.0.0.1:9/p", "--protocol", "kserve-v1"],
                    ["bench tune starts each configuration itself", "(hint: use bench run"])
    if name == "unknown protocol":
        return Case(["run", "--protocol", "soap"], ["--protocol soap: unknown", "(hint: one of: kserve-v1"])
    if name == "protocol the runtime does not serve":
        return Case(["run", "--runtime", "fastapi", "--protocol", "v2-grpc"],
                    ["--protocol v2-grpc: none of the runtimes asked for serves it",
                     "(hint: runtimes that do: mlserver"])
    if name == "sampling with remote workers":
        return Case(["run", "--runtime", "fastapi", "--sample-server", "--expect-workers", "2"],
                    ["--sample-server with --expect-workers", "(hint: sample with a local generator"])
    raise AssertionError(name)


CASES = ["unknown runtime", "unknown model", "unknown subcommand", "unwritable json", "malformed runtime.yaml",
         "unknown scenario", "malformed scenario", "impossible rate", "closed loop with a rate", "unknown run length",
         "bad cpu list", "unavailable cpu", "existing run folder", "negative seed", "tune cpu budget too big",
         "tune memory budget malformed", "tune no configurations", "generator processes -1", "generator processes 0",
         "generator processes 1000", "scenario duration_s .inf", "scenario warmup_s .nan",
         "scenario request_timeout_s .inf", "scenario seed -1", "scenario sweep .inf", "closed sweep of infinity",
         "rate x duration too large", "out is a file", "url without the url target", "url target without a url",
         "url target with another scheme", "url target without a protocol", "url target with an unknown protocol",
         "url target with a malformed header", "url target with a runtime", "url target insecure over http",
         "tune with the url target", "unknown protocol", "protocol the runtime does not serve",
         "sampling with remote workers"]
# rich soft-wraps console.print at the console width (80 when not a terminal): see the report
ONE_LINE_CASES = list(CASES)


def _squash(text: str) -> str:
    return "".join(text.split())


def _check_error_output(case: Case, code: Any, out: str, err: str) -> None:
    err = ANSI.sub("", err)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("error: ")
    assert err.endswith("\n")
    for fragment in case.says:
        assert _squash(fragment) in _squash(err), f"{fragment!r} not in {err!r}"


@pytest.fixture
def no_deploy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process: fail instead of building an environment, resolving models or starting a server."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a usage error reached the point of provisioning or deploying")

    monkeypatch.setattr(bench.measure.check, "run_check", refuse)
    monkeypatch.setattr(bench.measure.run, "run_benchmark", refuse)
    monkeypatch.setattr(bench.provision.envs, "build_env", refuse)
    monkeypatch.setattr(LocalTarget, "deploy", refuse)
    # main() sets these and handlers of SIGINT, SIGTERM and SIGHUP for the whole process: undo them after each test
    for name in ("MLFLOW_LOGGING_LEVEL", "GIT_PYTHON_REFRESH", "FORCE_COLOR", "SERVEBENCH_OWNER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("SERVEBENCH_HOME", str(Path(os.devnull)))  # nothing may be written there
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _in_process(argv: list[str]) -> Any:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _subprocess(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert BENCH.is_file(), f"{BENCH} missing: pip install -e . in the harness venv"
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "PYTHONWARNINGS")}
    env.update(COLUMNS="80", SERVEBENCH_HOME=str(cwd / "state"), SERVEBENCH_ENV_CACHE=str(cwd / "envs"))
    return subprocess.run([str(BENCH), *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.usefixtures("no_deploy")
@pytest.mark.parametrize("name", CASES)
def test_usage_error_in_process(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _case(name, tmp_path)
    code = _in_process(case.argv)
    captured = capsys.readouterr()
    _check_error_output(case, code, captured.out, captured.err)


@pytest.mark.parametrize("name", CASES)
def test_usage_error_in_subprocess(name: str, tmp_path: Path) -> None:
    case = _case(name, tmp_path)
    result = _subprocess(case.argv, tmp_path)
    _check_error_output(case, result.returncode, result.stdout, result.stderr)
    assert not (tmp_path / "envs").exists(), "an environment build started"
    assert not (tmp_path / "state").exists(), "state (models, logs) was written before the usage error"


@pytest.mark.usefixtures("no_deploy")
@pytest.mark.parametrize("name", ONE_LINE_CASES)
def test_usage_error_is_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _case(name, tmp_path)
    _in_process(case.argv)
    lines = ANSI.sub("", capsys.readouterr().err).splitlines()
    assert len(lines) == 1, lines


@pytest.mark.usefixtures("no_deploy")
def test_version_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _in_process(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "servebench 0.1.0"


@pytest.mark.usefixtures("no_deploy")
@pytest.mark.parametrize("argv", [[], ["check", "--bogus"], ["envs"], ["serve", "--model", "iris-logreg"],
                                  ["envs", "build", "--parallel", "many"]], ids=repr)
def test_argparse_errors_are_one_line_with_a_hint(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = _in_process(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert re.search(r" \(hint: bench( [a-z]+)* --help\)\n\Z", captured.err), captured.err
    assert len(captured.err.splitlines()) == 1
    assert "usage:" not in captured.err




@pytest.mark.usefixtures("no_deploy")
@pytest.mark.parametrize("runtime", ["[bold]x", "[/x]"])
def test_user_text_is_printed_verbatim(runtime: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _in_process(["check", "--runtime", runtime])
    err = _squash(capsys.readouterr().err)
    assert code == 2
    assert _squash(runtime) in err


# ---- the parser and the pieces commands are made of ---------------------------------------------------

COMMANDS = ["models", "envs", "serve", "check", "run", "capacity", "tune", "report", "compare", "baseline", "images",
            "cluster", "compose", "doctor", "calibrate", "worker"]


def test_help_lists_every_command_in_order() -> None:
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    assert list(commands.choices) == COMMANDS


@pytest.mark.parametrize(("argv", "dest", "value", "new"), [
    (["run", "--profile", "full"], "length", "full", "--length"),
    (["capacity", "--profile", "smoke"], "length", "smoke", "--length"),
    (["run", "--profile-server"], "sample_server", True, "--sample-server"),
    (["run", "--profile-rate", "250"], "sample_rate", 250, "--sample-rate"),
    (["tune", "--no-server-profile"], "no_sample_server", True, "--no-sample-server"),
])
def test_a_renamed_option_still_works_for_a_release_and_says_its_new_name(
        argv: list[str], dest: str, value: object, new: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    (warning,) = capsys.readouterr().err.splitlines()
    assert argv[1] in warning and new in warning


def test_the_new_spellings_say_nothing_and_the_old_ones_are_not_in_the_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["run", "--length", "smoke", "--sample-server", "--sample-rate", "50"])
    assert (args.length, args.sample_server, args.sample_rate) == ("smoke", True, 50)
    assert build_parser().parse_args(["run"]).length == "quick"
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--length" in shown and "--sample-server" in shown and "--profile" not in shown


def test_building_the_parser_imports_no_library() -> None:
    """`bench --help` and argparse errors stay instant: command modules import the library when they run."""
    heavy = ("pandas", "numpy", "rich", "bench.config", "bench.targets.local")
    probe = (f"import sys; from bench.cli import build_parser; build_parser(); "
             f"print([m for m in {heavy} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_target_choices_are_the_factory_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert _in_process(["run", "--target", "nope"]) == 2
    err = capsys.readouterr().err
    assert all(f"'{name}'" in err for name in TARGETS) and len(err.splitlines()) == 1
    with pytest.raises(BenchError) as caught:
        make_target("nope", TargetOptions(CpuPlan((0,), (0,)), "python:3.11-slim", offline=False, memory="4g"))
    assert caught.value.hint == "valid: local, docker, kserve, url"


def test_progress_and_warnings_are_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    console.status(Status("[bold]x", "[/x] building"))
    console.progress(Message("[red]step"))
    console.print_published(Published(warnings=("not logged to MLflow: [/mlflow]",)))
    lines = ANSI.sub("", capsys.readouterr().err).splitlines()
    assert lines == ["  [bold]x: [/x] building", "  [red]step", "warning: not logged to MLflow: [/mlflow]"]


@pytest.mark.parametrize(("argv", "message"), [
    (["capacity", "--slo", "p99"], "--slo 'p99': expected PERCENTILE:MSms"),
    (["capacity", "--slo", "p42:5ms"], "--slo 'p42:5ms': expected PERCENTILE:MSms"),
    (["capacity", "--start-rate", "0"], "--start-rate, --max-rate, --resolution or --repeats out of range"),
    (["capacity", "--resolution", "150"], "--start-rate, --max-rate, --resolution or --repeats out of range"),
])
def test_capacity_usage_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "(hint:" in err and err.count("\n") == 1
