"""Which configurations bench tune measures: pure logic, driven like the capacity search.

The search is a generator: it yields the next configuration (knob values) to measure and receives its
score (the capacity in req/s, or None when it had none or broke the budget); it returns what it tried,
what it skipped and the best. A space of at most GRID_LIMIT configurations is measured whole (a grid).
A larger one by coordinate descent: from the default, each knob in turn takes each of its values with the
others held at the best found so far, and keeps the best; a second pass runs only when the first moved.
Configurations over the CPU budget are skipped with the reason, and at most max_configs are measured.
Ties keep the configuration found first (the default before any other): a change must earn its place.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

from bench.knobs import Config, Knob, grid, knob_defaults, over_budget

GRID_LIMIT = 4
PASSES = 2
SearchKind = Literal["grid", "coordinate descent"]


@dataclass(frozen=True)
class Trial:
    config: Config
    score: float | None


@dataclass(frozen=True)
class TuningOutcome:
    search: SearchKind
    tried: tuple[Trial, ...]
    skipped: tuple[tuple[Config, str], ...]

    @property
    def best(self) -> Trial:
        """The highest score; the earliest among equals (the default is tried first)."""
        return max(self.tried, key=lambda trial: -1.0 if trial.score is None else trial.score)


TuningSearch = Generator[Config, float | None, TuningOutcome]


def search_kind(knobs: Sequence[Knob]) -> SearchKind:
    return "grid" if len(grid(knobs)) <= GRID_LIMIT else "coordinate descent"


def tuning_search(knobs: Sequence[Knob], server_cpus: int, max_configs: int) -> TuningSearch:
    """Yield configurations to measure; send back each one's score; returns the TuningOutcome."""
    tried: list[Trial] = []
    skipped: list[tuple[Config, str]] = []

    def seen(config: Config) -> bool:
        return any(t.config == config for t in tried) or any(c == config for c, _ in skipped)

    def measure(config: Config) -> Generator[Config, float | None, None]:
        reason = over_budget(knobs, config, server_cpus)
        if reason is not None:
            skipped.append((config, reason))
            return
        score = yield config
        tried.append(Trial(config, score))

    kind = search_kind(knobs)
    default = knob_defaults(knobs)
    if kind == "grid":
        for config in grid(knobs):
            if len(tried) >= max_configs:
                break
            yield from measure(config)
        return TuningOutcome(kind, tuple(tried), tuple(skipped))
    yield from measure(default)
    current = default
    for _ in range(PASSES):
        moved = False
        for knob in knobs:
            for value in knob.values:
                candidate = {**current, knob.name: value}
                if not seen(candidate) and len(tried) < max_configs:
                    yield from measure(candidate)
            along = [t for t in tried if all(t.config[k] == v for k, v in current.items() if k != knob.name)]
            best_here = max(along, key=lambda trial: -1.0 if trial.score is None else trial.score, default=None)
            if best_here is not None and best_here.config != current and \
                    (best_here.score or -1.0) > _score_of(tried, current):
                current, moved = best_here.config, True
        if not moved:
            break
    return TuningOutcome(kind, tuple(tried), tuple(skipped))


def _score_of(tried: list[Trial], config: Config) -> float:
    found = next((t.score for t in tried if t.config == config), None)
    return -1.0 if found is None else found
