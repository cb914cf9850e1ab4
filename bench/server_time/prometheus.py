"""Prometheus' text exposition format, read into samples: what a runtime's /metrics page says.

Only what the harness needs: sample lines `name{label="value",...} value [timestamp]` and `# TYPE` lines;
escaped quotes inside label values are honoured. A line that cannot be read is skipped (a page is third-party
text), never an error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

    def matches(self, wanted: dict[str, str]) -> bool:
        own = dict(self.labels)
        return all(own.get(key) == value for key, value in wanted.items())


@dataclass(frozen=True)
class Page:
    samples: tuple[Sample, ...]
    types: dict[str, str]  # family name -> counter, gauge, histogram, summary, untyped

    def total(self, name: str, labels: dict[str, str]) -> float | None:
        """The sum of a series over every label set that matches (e.g. every path or status code); None
        when the page has no such series."""
        values = [sample.value for sample in self.samples if sample.name == name and sample.matches(labels)]
        return math.fsum(values) if values else None

    def buckets(self, family: str, labels: dict[str, str]) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets (upper bound, count), summed over matching label sets, by bound."""
        summed: dict[float, float] = {}
        for sample in self.samples:
            bound = sample.label("le")
            if sample.name == f"{family}_bucket" and bound is not None and sample.matches(labels):
                key = math.inf if bound in ("+Inf", "Inf") else float(bound)
                summed[key] = summed.get(key, 0.0) + sample.value
        return sorted(summed.items())


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for match in LABEL.finditer(text):
        value = match.group("value").replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        pairs.append((match.group("key"), value))
    return tuple(pairs)


def parse(text: str) -> Page:
    samples = []
    types: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        samples.append(Sample(match.group("name"), _labels(match.group("labels") or ""), value))
    return Page(tuple(samples), types)
