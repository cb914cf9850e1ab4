"""Typed specs loaded from files, and where the harness keeps its state.

Every file a user can write (runtime.yaml, later scenarios) is validated here, and a bad one becomes a
BenchError naming the file and the field, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.errors import BenchError
from bench.knobs import KNOB_PLACEHOLDER, Knob, checked_config
from bench.knobs import Scalar as Scalar
from bench.model_spec import INPUT_KINDS as INPUT_KINDS
from bench.model_spec import InputKind as InputKind
from bench.model_spec import ModelSpec as ModelSpec  # the type of a setting or knob value, re-exported
from bench.paths import SHARED_PREFIX
from bench.paths import env_cache_dir as env_cache_dir  # re-exported: where every caller looks
from bench.paths import project_root as project_root
from bench.paths import runtimes_dir as runtimes_dir
from bench.paths import shared_code_dir as shared_code_dir
from bench.paths import state_dir as state_dir
from bench.runtime_options import (
    FREE_PORT,
    KNOWN_PLACEHOLDERS,
    PLACEHOLDER,
    ComposeOptions,
    FrameRule,
    KServeOptions,
    MetricsSpec,
    OtherProtocols,
    PlatformOptions,
    Serves,
    known_protocol,
)


class RuntimeSpec(BaseModel):
    """How to start one serving runtime and talk to it: the contents of runtimes/<name>/runtime.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    protocol: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    readiness_path: str = Field(pattern=r"^/")
    predict_path: str = Field(pattern=r"^/")
    startup_timeout_s: float = Field(default=120.0, gt=0)
    warmup_s: float = Field(default=0.0, ge=0, le=600, description=(
        "at least this much warm-up before every measurement: for a runtime slow for a while after it is ready"))
    settings: dict[str, Scalar] = Field(
        default_factory=dict, description="workers, threads, event loop...: recorded as fairness settings"
    )
    serving_code: list[str] = Field(default_factory=list, description="files a team would have to write")
    parity_atol: float | None = Field(default=None, gt=0, lt=1, description=(
        "a looser parity tolerance, for a runtime that serves a derived artifact (an ONNX export)"))
    not_supported: dict[str, str] = Field(default_factory=dict, description=(
        "models it cannot serve, by model name or framework (sklearn, pytorch), and why"))
    artifact: Literal["mlflow-model", "onnx-export"] = Field(default="mlflow-model", description=(
        "what it loads: the MLflow model folder, or the ONNX export checked against the reference answers"))
    serves: Serves = Field(default_factory=lambda: Serves(), description=(
        "the MLflow flavours and input kinds it serves (a team's model outside them is unsupported)"))
    kserve: KServeOptions = KServeOptions()
    compose: ComposeOptions = ComposeOptions()
    platform: PlatformOptions | None = None
    knobs: list[Knob] = Field(default_factory=list, description="settings worth tuning (bench tune)")
    profile_rules: list[FrameRule] = Field(default_factory=list, description=(
        "how its own frames count in a server profile, tried before bench/server_time/frame_rules.yaml"))
    metrics: MetricsSpec | None = Field(default=None, description=(
        "its Prometheus page and request-duration series, scraped each second of a cell"))
    config: dict[str, Scalar] = Field(default_factory=dict, description="the knob values it runs with")
    protocols: OtherProtocols = Field(default_factory=dict, description=(
        "protocols it also serves, each on its own port (`bench run --protocol` chooses)"))
    served_on: str | None = None  # set on a variant speaking one of `protocols`: the port template it uses
    provisioned_as: str | None = None  # a variant shares its runtime's environment and image
    folder: Path = Path(".")

    _protocol = field_validator("protocol")(known_protocol)

    @field_validator("command", "env", "predict_path", "readiness_path")
    @classmethod
    def _known_placeholders(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        for text in texts:
            for name in PLACEHOLDER.findall(text):
                if name not in KNOWN_PLACEHOLDERS and not FREE_PORT.fullmatch(name) \
                        and not KNOB_PLACEHOLDER.fullmatch(name):
                    known = ", ".join(sorted(KNOWN_PLACEHOLDERS | {"free_port_1..9", "knob_NAME"}))
                    raise ValueError(f"unknown placeholder '{{{name}}}'; known: {known}")
        return value

    @model_validator(mode="after")
    def _declared_knobs(self) -> RuntimeSpec:
        names = {knob.name for knob in self.knobs}
        for text in [*self.command, *self.env.values()]:
            for used in KNOB_PLACEHOLDER.findall(text):
                if used not in names:
                    raise ValueError(f"placeholder '{{knob_{used}}}' names no knob; declared: {sorted(names)}")
        checked_config(self.knobs, self.config)
        return self

    @property
    def build_name(self) -> str:
        """The name its environment and image are cached under: a protocol variant shares its runtime's."""
        return self.provisioned_as or self.name

    def unsupported_reason(self, model: ModelSpec) -> str | None:
        """Why this runtime cannot serve the model (not a failure: the pair is skipped), or None: what
        runtime.yaml says it cannot serve by name or framework, then what `serves:` declares it can."""
        declared = self.not_supported.get(model.name) or self.not_supported.get(model.framework)
        return declared or self.serves.unsupported_reason(self.name, model.all_flavours, model.input_kind)

    def parity_tolerance(self, model: ModelSpec) -> float:
        return max(model.parity_atol, self.parity_atol or 0.0)

    def configured(self, values: dict[str, Scalar]) -> RuntimeSpec:
        """This runtime with knob values (the rest at their defaults), recorded in its settings too."""
        config = checked_config(self.knobs, values)
        return self.model_copy(update={"config": config, "settings": {**self.settings, **config}})

    def serving_code_paths(self) -> list[Path]:
        """The serving_code files on disk. ../common/ names the shared code (runtimes/common), also from a
        runtime folder copied elsewhere, as {shared_dir} does when it runs."""
        paths = []
        for name in self.serving_code:
            path = self.folder / name
            if not path.exists() and name.startswith(SHARED_PREFIX):
                path = shared_code_dir() / name.removeprefix(SHARED_PREFIX)
            paths.append(path)
        return paths

    @property
    def requirements_file(self) -> Path:
        return self.folder / "requirements.txt"


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; errors name the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not UTF-8 text", hint="save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BenchError(f"{path}: malformed YAML{where}", hint="check indentation and quoting") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a mapping at the top level")
    odd_keys = [key for key in data if not isinstance(key, str)]
    if odd_keys:
        raise BenchError(f"{path}: field '{odd_keys[0]}': keys must be names", hint="quote it or remove it")
    return data


def parse_runtime_spec(path: Path) -> RuntimeSpec:
    """Load and validate one runtime.yaml; a bad field becomes 'file: field x: problem'."""
    data = load_yaml_mapping(path)
    if "folder" in data:
        raise BenchError(f"{path}: field 'folder': not allowed (the folder is where runtime.yaml is)")
    try:
        return RuntimeSpec(**data, folder=path.parent.resolve()).configured({})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BenchError(
            f"{path}: field '{_field_path(first['loc'])}': {first['msg']}",
            hint=f"{len(exc.errors())} problem(s) in all; see runtimes/fastapi/runtime.yaml for a valid example",
        ) from None


def available_runtimes() -> list[str]:
    root = runtimes_dir()
    return sorted(p.parent.name for p in root.glob("*/runtime.yaml")) if root.is_dir() else []


def load_runtime(name_or_path: str) -> RuntimeSpec:
    """A runtime by name (runtimes/<name>) or by path to a user's own runtime folder."""
    as_path = Path(name_or_path).expanduser()
    if os.sep in name_or_path or name_or_path.startswith(".") or (as_path / "runtime.yaml").is_file():
        if not (as_path / "runtime.yaml").is_file():
            raise BenchError(f"no runtime.yaml in {as_path}", hint="a runtime folder holds runtime.yaml")
        return parse_runtime_spec(as_path / "runtime.yaml")
    folder = runtimes_dir() / name_or_path
    if not (folder / "runtime.yaml").is_file():
        raise BenchError(
            f"unknown runtime '{name_or_path}'",
            hint=f"valid: {', '.join(available_runtimes())}, all, or a path to a runtime folder",
        )
    return parse_runtime_spec(folder / "runtime.yaml")


def split_names(value: str, valid: list[str], kind: str) -> list[str]:
    """Expand 'all' or a comma list (callers check each name, so paths to runtime folders pass)."""
    if value == "all":
        return list(valid)
    names = [part.strip() for part in value.split(",") if part.strip()]
    if "all" in names:
        raise BenchError(f"'all' cannot be combined with other {kind} names", hint="give 'all' alone")
    if not names:
        raise BenchError(f"no {kind} given", hint=f"valid: {', '.join(valid)}, all")
    return names


def load_runtimes(value: str) -> list[RuntimeSpec]:
    return [load_runtime(name) for name in split_names(value, available_runtimes(), "runtime")]


# ---- scenarios and run lengths ------------------------------------------------------------------

MAX_RATE_PER_PROCESS = 20_000.0  # far above what one Locust process can send (about 10k req/s here)
# Requests one measurement may schedule (rate x duration): an hour at 5,000 req/s. Past it, a typo (a
# duration in ms, an extra zero) is far likelier than intent, and the generator's schedule is held in memory.
MAX_SCHEDULED_REQUESTS = 18_000_000
LENGTHS = "lengths"  # scenarios/lengths.yaml: the run lengths (smoke for CI, full for decisions), not a scenario
MAX_DURATION_S = 24 * 3600.0


class Stage(BaseModel):
    """One step of a time-varying open-loop load (ramp, step, spike)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    duration_s: float = Field(gt=0, le=MAX_DURATION_S)
    rate: float = Field(gt=0)


PercentileName = Literal["p50", "p90", "p95", "p99", "p999"]
# The percentiles every cell reports, and the level each name stands for: the one list of them.
PERCENTILE_LEVELS: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
PERCENTILE_NAMES: tuple[str, ...] = get_args(PercentileName)
assert tuple(PERCENTILE_LEVELS) == PERCENTILE_NAMES


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    percentile: PercentileName = "p99"
    ms: float = Field(gt=0)


class Scenario(BaseModel):
    """A load scenario (scenarios/<name>.yaml). Durations are for the `full` run length."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    loop: Literal["open", "closed"]
    arrival: Literal["constant", "poisson", "gamma", "trace"] = "constant"
    arrival_cv: float = Field(default=1.0, gt=0, le=20)  # gamma: the gaps' CV (1 is Poisson's; above 1, bursty)
    arrivals_file: str | None = None  # trace: the recorded file replayed (rate: its mean rate x the time scale)
    rate: float | None = Field(default=None, gt=0, description="open loop: requests per second")
    users: int | None = Field(default=None, ge=1, le=4096, description="closed loop: concurrent users")
    stages: list[Stage] | None = Field(default=None, min_length=1, description="open loop: rate over time")
    sweep: list[float] | None = Field(default=None, min_length=1,
                                      description="one measurement per rate (open) or user count (closed)")
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [1], min_length=1)
    warmup_s: float = Field(default=5.0, ge=0, le=MAX_DURATION_S)
    duration_s: float = Field(default=30.0, gt=0, le=MAX_DURATION_S)
    slo: Slo = Slo(percentile="p99", ms=50.0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    min_requests: int = Field(default=100, ge=1)
    request_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_in_flight: int = Field(default=256, ge=1, le=4096, description="open loop: user pool size")
    generator_processes: int = Field(default=1, ge=1, le=64)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if (self.arrival == "trace") != (self.arrivals_file is not None):
            raise ValueError("'arrival: trace' and 'arrivals_file' go together")
        load_keys = [key for key in ("rate", "stages", "sweep") if getattr(self, key) is not None]
        if self.loop == "open":
            if self.users is not None:
                raise ValueError("'users' is for closed loop; an open-loop scenario sets 'rate', 'stages' or 'sweep'")
            if len(load_keys) != 1:
                raise ValueError("an open-loop scenario sets exactly one of 'rate', 'stages', 'sweep'")
            rates = [self.rate] if self.rate else [s.rate for s in self.stages or []] or list(self.sweep or [])
            if any(r is None or r <= 0 for r in rates):
                raise ValueError(f"'{load_keys[0]}': rates must be positive")
            ceiling = MAX_RATE_PER_PROCESS * self.generator_processes
            if max(r for r in rates if r is not None) > ceiling:
                raise ValueError(f"'{load_keys[0]}': a rate above {ceiling:.0f} req/s is beyond "
                                 f"{self.generator_processes} generator process(es); raise generator_processes "
                                 "or see `bench calibrate`")
            self._bounded_schedule()
        else:
            if self.rate is not None or self.stages is not None:
                field = "rate" if self.rate is not None else "stages"
                raise ValueError(f"'{field}': a closed-loop scenario sets 'users' (or a 'sweep' of user counts), "
                                 "not rates")
            if (self.users is None) == (self.sweep is None):
                raise ValueError("a closed-loop scenario sets exactly one of 'users', 'sweep'")
            if self.sweep is not None and any(u < 1 or u != int(u) or u > 4096 for u in self.sweep):
                raise ValueError("'sweep': a closed-loop sweep lists whole user counts from 1 to 4096")
        return self

    def _bounded_schedule(self) -> None:
        """rate x duration within MAX_SCHEDULED_REQUESTS for the longest measurement the scenario makes."""
        if self.stages is not None:
            requests = sum(stage.rate * stage.duration_s for stage in self.stages)
        else:
            requests = max([self.rate] if self.rate else list(self.sweep or [])) * (self.warmup_s + self.duration_s)
        if requests > MAX_SCHEDULED_REQUESTS:
            raise ValueError(f"rate x duration schedules {requests:,.0f} requests in one measurement, beyond "
                             f"{MAX_SCHEDULED_REQUESTS:,}; shorten duration_s or lower the rate")


class RunLength(BaseModel):
    """How long to measure (--length): scales every scenario's warm-up and duration (results.json: `profile`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str
    time_scale: float = Field(gt=0)
    min_warmup_s: float = Field(default=1.0, ge=0)
    min_duration_s: float = Field(default=3.0, gt=0)

    def warmup(self, seconds: float) -> float:
        return max(self.min_warmup_s, seconds * self.time_scale) if seconds > 0 else 0.0

    def duration(self, seconds: float) -> float:
        return max(self.min_duration_s, seconds * self.time_scale)


def scenarios_dir() -> Path:
    return project_root() / "scenarios"


def available_scenarios() -> list[str]:
    folder = scenarios_dir()
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != LENGTHS) if folder.is_dir() else []


def _validated(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field_path(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        where = f"field '{field}': " if first["loc"] else ""
        raise BenchError(f"{path}: {where}{message}", hint=f"see {scenarios_dir() / 'steady.yaml'} for an example") \
            from None
    except TypeError as exc:
        raise BenchError(f"{path}: {exc}") from None


def with_options(scenario: Scenario, **options: object) -> Scenario:
    """The scenario with command-line overrides (generator_processes=..., seed=...), validated as the YAML
    is: an override outside its field's range is the option's error, not a run that starts anyway."""
    try:
        return Scenario(**{**scenario.model_dump(), **options})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else next(iter(options))
        option = f"--{field.replace('_', '-')}"
        value = options.get(field, next(iter(options.values())))
        raise BenchError(f"{option} {value}: {first['msg'].removeprefix('Value error, ')}",
                         hint=f"leave {option} out to use scenario {scenario.name}'s own {field}") from None


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (scenarios/<name>.yaml) or by path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if not (name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path):
        path = scenarios_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise BenchError(f"unknown scenario '{name_or_path}'",
                             hint=f"valid: {', '.join(available_scenarios())}, or a path to a YAML file")
    elif not path.is_file():
        raise BenchError(f"no scenario file {path}")
    data = load_yaml_mapping(path)
    scenario: Scenario = _validated(Scenario, data, path)
    return scenario


def load_run_length(name: str) -> RunLength:
    path = scenarios_dir() / f"{LENGTHS}.yaml"
    lengths = load_yaml_mapping(path)
    if name not in lengths:
        raise BenchError(f"unknown run length '{name}'", hint=f"valid: {', '.join(lengths)}")
    entry = lengths[name]
    if not isinstance(entry, dict):
        raise BenchError(f"{path}: field '{name}': expected a mapping")
    length: RunLength = _validated(RunLength, {"name": name, **entry}, path)
    return length
