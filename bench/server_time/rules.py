"""The rules that sort sampled frames into categories (frame_rules.yaml plus a runtime's own), and the shares
of a profile they give."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bench.errors import BenchError
from bench.results.profiles import ProfileShares
from bench.runtime_options import PROFILE_CATEGORIES, FrameRule, ProfileCategory
from bench.server_time.stacks import Frame, Stack

RULES_FILE = Path(__file__).with_name("frame_rules.yaml")


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[FrameRule]


@cache
def common_rules(path: Path = RULES_FILE) -> tuple[FrameRule, ...]:
    try:
        return tuple(RulesFile.model_validate(yaml.safe_load(path.read_text())).rules)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise BenchError(f"{path}: {str(exc).splitlines()[0]}", hint="fix the frame rules file") from None


def _module_matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def rule_matches(rule: FrameRule, frame: Frame) -> bool:
    if frame.is_process:
        return False
    if rule.modules and not _module_matches(frame.module, rule.modules):
        return False
    return not rule.functions or any(fnmatch.fnmatchcase(frame.function, pattern) for pattern in rule.functions)


@dataclass
class Classifier:
    """Charges each sample to the innermost frame a rule matches (the first matching rule, the runtime's
    own tried first); a sample no rule matches is unclassified."""

    rules: tuple[FrameRule, ...]
    _frames: dict[Frame, ProfileCategory | None] = field(default_factory=dict)

    @classmethod
    def for_runtime(cls, runtime_rules: list[FrameRule] | tuple[FrameRule, ...]) -> Classifier:
        return cls((*runtime_rules, *common_rules()))

    def frame(self, frame: Frame) -> ProfileCategory | None:
        if frame not in self._frames:
            self._frames[frame] = next((rule.category for rule in self.rules if rule_matches(rule, frame)), None)
        return self._frames[frame]

    def stack(self, stack: Stack) -> ProfileCategory | None:
        for frame in reversed(stack.frames):
            category = self.frame(frame)
            if category is not None:
                return category
        return None

    def counts(self, stacks: list[Stack]) -> dict[str, int]:
        totals = dict.fromkeys((*PROFILE_CATEGORIES, "unclassified"), 0)
        for stack in stacks:
            totals[self.stack(stack) or "unclassified"] += stack.count
        return totals

    def shares(self, stacks: list[Stack]) -> ProfileShares | None:
        """The share of samples per category, summing to 1; None without samples."""
        totals = self.counts(stacks)
        samples = sum(totals.values())
        if samples == 0:
            return None
        return ProfileShares(**{name: count / samples for name, count in totals.items()})
