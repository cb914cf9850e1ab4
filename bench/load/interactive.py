"""The locustfile's interactive mode, as pure logic: which runtime a web-UI test talks to, and how.

docker-compose.yml starts Locust's web UI beside the four runtimes. There is no load plan then: the
user sets users and spawn rate in the UI and picks the runtime by its Host field or the Runtime field.
The runtimes are described by SERVEBENCH_TARGETS, one "name protocol predict-URL" per line, e.g.
"fastapi kserve-v1 http://127.0.0.1:18083/predict", so Locust needs no runtime.yaml (or YAML parser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from bench.protocols import CODECS, Array


@dataclass(frozen=True)
class Target:
    """A runtime as Locust sees it: a base URL (Locust's host), a predict path and a wire protocol."""

    name: str
    protocol: str
    base_url: str
    predict_path: str


def parse_targets(text: str) -> dict[str, Target]:
    """SERVEBENCH_TARGETS ("name protocol URL" per line or per ';') -> targets by name; ValueError if malformed."""
    targets: dict[str, Target] = {}
    for entry in re.split(r"[\n;]", text):
        fields = entry.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"SERVEBENCH_TARGETS entry {entry.strip()!r}: expected 'name protocol predict-URL'")
        name, protocol, url = fields
        if protocol not in CODECS:
            raise ValueError(f"SERVEBENCH_TARGETS entry {name}: unknown protocol {protocol!r}; known: "
                             f"{', '.join(sorted(CODECS))}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"SERVEBENCH_TARGETS entry {name}: {url!r} is not an http(s) URL")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        targets[name] = Target(name, protocol, f"{parts.scheme}://{parts.netloc}", path)
    if not targets:
        raise ValueError("SERVEBENCH_TARGETS names no runtime: expected 'name protocol predict-URL' per line")
    return targets


def choose_target(targets: dict[str, Target], host: str | None, runtime: str | None) -> Target:
    """Host picks the runtime when it is one of the targets' URLs; otherwise the runtime named picks the
    protocol and path, sent to host if one is given (a server compose does not know) or to its own URL."""
    host = (host or "").strip().rstrip("/")
    if host:
        for target in targets.values():
            if target.base_url == host:
                return target
    if runtime not in targets:
        known = ", ".join(f"{t.name} ({t.base_url})" for t in targets.values())
        raise ValueError(f"runtime {runtime!r} is unknown and host {host or '(empty)'} is none of the runtimes: "
                         f"{known}; pick one in the Runtime field or give its URL as Host")
    target = targets[runtime]
    return replace(target, base_url=host) if host else target


def load_rows(path: Path) -> Array:
    """Rows to send: a .npy matrix, or the golden inputs of a model's golden.npz (its local copy)."""
    if path.suffix == ".npz":
        with np.load(path) as golden:
            return np.asarray(golden["inputs"])
    return np.asarray(np.load(path))
