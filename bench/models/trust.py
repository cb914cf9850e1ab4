"""Artifacts trusted by their content: the sha256 of each model version the harness first used, checked after
every download and on every local copy it serves.

Every runtime unpickles the artifact, and the golden answers come from the same store, so parity cannot
tell a swapped model from the real one: anyone who can write to a shared tracking store could run code in
every runtime. A version is immutable in MLflow's model, so its content is recorded the first time this
harness registers or resolves it (state_dir()/trusted-artifacts.json, by store and version URI, credentials
masked) and a later difference is refused with one line naming the version. A local folder given as
--model is the user's own and may change: it is not recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from bench.errors import BenchError
from bench.paths import state_dir
from bench.redact import redact_uri

TRUST_FILE = "trusted-artifacts.json"


def trust_file() -> Path:
    return state_dir() / TRUST_FILE


def content_hash(folder: Path) -> str:
    """sha256 over every file's relative path and bytes: the same artifact, the same hash, wherever it came from."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def check_artifact(store: str, uri: str, digest: str) -> None:
    """Record the version's digest the first time; refuse it (BenchError, exit 2) when it differs later."""
    path = trust_file()
    records = _read(path)
    known = records.get(_key(store, uri))
    if known == digest:
        return
    if known is not None:
        raise BenchError(f"{uri}: its artifact is not the one first used here (sha256 {digest[:16]}..., recorded "
                         f"{known[:16]}...): it changed in the store or on this disk",
                         hint=f"register a changed model as a new version; to trust this content, remove the line "
                              f"for {uri} from {path}")
    record_artifact(store, uri, digest)


def record_artifact(store: str, uri: str, digest: str) -> None:
    """A version this harness has just registered itself: its content is the truth, whatever was recorded."""
    path = trust_file()
    records = _read(path)
    records[_key(store, uri)] = digest
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".trust-", delete=False) as partial:
        json.dump(records, partial, indent=1, sort_keys=True)
        partial.flush()
        os.fsync(partial.fileno())
    os.replace(partial.name, path)


def _key(store: str, uri: str) -> str:
    return f"{redact_uri(store)} {uri}"


def _read(path: Path) -> dict[str, str]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}
