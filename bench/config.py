"""Typed specs loaded from files, and where the harness keeps its state.

Every file a user can write (runtime.yaml, later scenarios) is validated here, and a bad one becomes a
BenchError naming the file and the field, never a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import BenchError
from bench.protocols import CODECS

PLACEHOLDER = re.compile(r"\{([A-Za-z_0-9]+)\}")
KNOWN_PLACEHOLDERS = {
    "python",  # the runtime environment's interpreter
    "bin",  # the runtime environment's bin/ folder
    "host",  # address to bind (127.0.0.1 locally)
    "port",  # the HTTP port the harness probes
    "model_dir",  # local copy of the MLflow model version
    "model_name",  # the reference model's name
    "runtime_dir",  # the runtime folder (server code lives here)
    "work_dir",  # a fresh scratch folder per deployment
}
FREE_PORT = re.compile(r"free_port_[1-9]")


def project_root() -> Path:
    """The checkout holding runtimes/ and scenarios/ (the package's parent), else the working dir."""
    candidate = Path(__file__).resolve().parent.parent
    if (candidate / "runtimes").is_dir():
        return candidate
    return Path.cwd()


def state_dir() -> Path:
    """Project-local, git-ignored: MLflow store, model copies. SERVEBENCH_HOME overrides."""
    return Path(os.environ.get("SERVEBENCH_HOME", project_root() / ".servebench")).resolve()


def env_cache_dir() -> Path:
    """Per-runtime virtualenvs, keyed by content hash, shared by every checkout on the machine."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "servebench" / "envs"
    return Path(os.environ.get("SERVEBENCH_ENV_CACHE", default)).resolve()


def runtimes_dir() -> Path:
    return project_root() / "runtimes"


Scalar = str | int | float | bool


class RuntimeSpec(BaseModel):
    """How to start one serving runtime and talk to it: the contents of runtimes/<name>/runtime.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    protocol: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    readiness_path: str = Field(pattern=r"^/")
    predict_path: str = Field(pattern=r"^/")
    startup_timeout_s: float = Field(default=120.0, gt=0)
    settings: dict[str, Scalar] = Field(
        default_factory=dict, description="workers, threads, event loop...: recorded as fairness settings"
    )
    serving_code: list[str] = Field(default_factory=list, description="files a team would have to write")
    folder: Path = Path(".")

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value not in CODECS:
            raise ValueError(f"unknown protocol '{value}'; known: {', '.join(sorted(CODECS))}")
        return value

    @field_validator("command", "env", "predict_path", "readiness_path")
    @classmethod
    def _known_placeholders(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        for text in texts:
            for name in PLACEHOLDER.findall(text):
                if name not in KNOWN_PLACEHOLDERS and not FREE_PORT.fullmatch(name):
                    known = ", ".join(sorted(KNOWN_PLACEHOLDERS | {"free_port_1..9"}))
                    raise ValueError(f"unknown placeholder '{{{name}}}'; known: {known}")
        return value

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
        return RuntimeSpec(**data, folder=path.parent.resolve())
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


@dataclass(frozen=True)
class ModelSpec:
    """A reference model: what it is, its input shape and how closely runtimes must agree with it."""

    name: str
    framework: Literal["sklearn", "pytorch"]
    dataset: Literal["iris", "digits"]
    description: str
    n_features: int
    n_classes: int
    input_dtype: Literal["float32", "float64"]
    parity_atol: float
