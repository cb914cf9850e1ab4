"""A team's own request bodies (`bench run --target url --data bodies.jsonl`), for an endpoint whose protocol
the harness does not speak: one JSON body per line, sent exactly as written, in turn.

There is no model to compare answers with, so parity is not compared: the endpoint must answer a first few
bodies with a 2xx before the load, and the results say the answers were not checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from bench.config import ModelSpec, state_dir
from bench.errors import BenchError
from bench.models.team import ModelFacts
from bench.models.team_source import slug

BODIES_FILE = "bodies.jsonl"  # the checked lines, one body each
MAX_BODIES = 100_000


def open_bodies(path: Path, name: str | None = None) -> ModelSpec:
    """Read and check the JSONL file (every line one JSON value), and keep it framed for the generator."""
    if not path.is_file():
        raise BenchError(f"--data {path}: no such file", hint="request bodies as JSONL, one JSON body per line")
    raw = path.read_bytes()
    bodies = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            raise BenchError(f"--data {path}: line {number} is not JSON: {exc}",
                             hint="one whole request body per line") from None
        bodies.append(line.strip())
    if not bodies:
        raise BenchError(f"--data {path}: no request body in it", hint="one JSON body per line")
    if len(bodies) > MAX_BODIES:
        raise BenchError(f"--data {path}: {len(bodies)} bodies, at most {MAX_BODIES}", hint="sample the file")
    digest = hashlib.sha256(raw).hexdigest()
    folder = state_dir() / "models" / "bodies" / digest[:16]
    model_name = slug(name or path.stem)
    facts = ModelFacts(uri=path.name, resolved=path.name, version="-", run_id=None, content_hash=digest,
                       flavours=("request bodies",), framework="external", inputs="request bodies as given",
                       outputs="not compared", predict_fn=None, requirements=(), output_dtype="none",
                       data=f"{path.name} ({len(bodies)} bodies, sent as they are)", rows=len(bodies))
    if not (folder / "facts.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BODIES_FILE).write_bytes(b"\n".join(bodies) + b"\n")
        (folder / "facts.json").write_text(json.dumps(asdict(facts), indent=1))
    return ModelSpec(name=model_name, framework="external", description=facts.data, parity_atol=0.0,
                     flavours=facts.flavours, source=path.name, prepared=str(folder))


def is_bodies_folder(folder: Path) -> bool:
    return (folder / BODIES_FILE).is_file()


def read_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line]
