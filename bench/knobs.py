"""Knobs: the settings of a runtime worth tuning, declared in its runtime.yaml, never named in the harness.

A knob lists the values worth trying and its default, and reaches the server through an environment
variable (`env:`) or a `{knob_NAME}` placeholder in the command or env templates, or both. A
configuration is one value per knob; the values a cell ran with are recorded on it (`config`) and in
the runtime's settings. The budget is the CPU set and memory every configuration shares: a knob may say
it spends CPUs (`max_per_cpu`: at most that many per server CPU, for workers or threads), and a
configuration over it is skipped rather than run on CPUs it does not have.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | float | bool
Config = dict[str, Scalar]
KNOB_PLACEHOLDER = re.compile(r"knob_([a-z][a-z0-9_]*)")


class Knob(BaseModel):
    """One entry of runtime.yaml's `knobs:` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    values: list[Scalar] = Field(min_length=1, description="the values worth trying")
    default: Scalar = Field(description="what the runtime ships with (one of values)")
    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="the environment variable that carries the value")
    max_per_cpu: float | None = Field(default=None, gt=0, description="budget: at most this many per server CPU")
    description: str = ""

    @model_validator(mode="after")
    def _default_is_a_value(self) -> Knob:
        if self.default not in self.values:
            raise ValueError(f"knob '{self.name}': default {self.default!r} is not one of its values {self.values}")
        if len(set(map(str, self.values))) != len(self.values):
            raise ValueError(f"knob '{self.name}': values repeat")
        return self


def knob_defaults(knobs: Sequence[Knob]) -> Config:
    return {knob.name: knob.default for knob in knobs}


def checked_config(knobs: Sequence[Knob], values: Mapping[str, Scalar]) -> Config:
    """Defaults overridden by values; a name or value the runtime does not declare is a ValueError."""
    declared = {knob.name: knob for knob in knobs}
    for name, value in values.items():
        if name not in declared:
            raise ValueError(f"no knob '{name}'; declared: {', '.join(declared) or 'none'}")
        if value not in declared[name].values:
            raise ValueError(f"knob '{name}': {value!r} is not one of {declared[name].values}")
    return {**knob_defaults(knobs), **values}


def knob_placeholders(config: Mapping[str, Scalar]) -> dict[str, str]:
    """The {knob_NAME} template values of a configuration."""
    return {f"knob_{name}": _text(value) for name, value in config.items()}


def knob_env(knobs: Sequence[Knob], config: Mapping[str, Scalar]) -> dict[str, str]:
    """The environment variables that carry a configuration's values."""
    return {knob.env: _text(config[knob.name]) for knob in knobs if knob.env and knob.name in config}


def over_budget(knobs: Sequence[Knob], config: Mapping[str, Scalar], server_cpus: int) -> str | None:
    """Why a configuration does not fit the CPU budget, or None when it does."""
    for knob in knobs:
        value = config.get(knob.name)
        if knob.max_per_cpu is not None and isinstance(value, int | float) and not isinstance(value, bool) \
                and value > knob.max_per_cpu * server_cpus:
            return f"{knob.name}={value} is more than {knob.max_per_cpu:g} per CPU on {server_cpus} CPU(s)"
    return None


def grid(knobs: Sequence[Knob]) -> list[Config]:
    """Every configuration, the default first."""
    every = [dict(zip([k.name for k in knobs], combo, strict=True)) for combo in
             itertools.product(*(k.values for k in knobs))]
    default = knob_defaults(knobs)
    return [default, *(config for config in every if config != default)] if knobs else [{}]


def config_label(config: Mapping[str, Scalar]) -> str:
    """workers=2,threads=4: short enough for a table cell and a cell label."""
    return ",".join(f"{name}={_text(value)}" for name, value in config.items()) or "default"


def _text(value: Scalar) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
