"""Artifacts trusted by content: recorded on first use, refused when a version's content changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.models.trust import check_artifact, content_hash, record_artifact, trust_file


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEBENCH_HOME", str(tmp_path / "home"))


def test_a_version_is_trusted_as_first_seen_and_refused_once_changed(tmp_path: Path) -> None:
    store = "http://alice:s3cret@mlflow.internal:5000"
    check_artifact(store, "models:/churn/3", "a" * 64)  # first use: recorded
    check_artifact(store, "models:/churn/3", "a" * 64)  # the same content: fine
    check_artifact(store, "models:/churn/4", "b" * 64)  # another version: its own record
    with pytest.raises(BenchError, match=r"models:/churn/3: its artifact is not the one first used here") as changed:
        check_artifact(store, "models:/churn/3", "c" * 64)
    assert "remove the line" in (changed.value.hint or "")
    check_artifact("sqlite:///other.db", "models:/churn/3", "c" * 64)  # another store, another version 3
    recorded = trust_file().read_text()
    assert "s3cret" not in recorded and "***@mlflow.internal" in recorded  # the store's credentials masked
    assert len(json.loads(recorded)) == 3


def test_a_version_registered_here_replaces_what_a_wiped_store_left_recorded() -> None:
    check_artifact("sqlite:///m.db", "models:/iris/1", "a" * 64)
    record_artifact("sqlite:///m.db", "models:/iris/1", "d" * 64)  # trained and registered anew
    check_artifact("sqlite:///m.db", "models:/iris/1", "d" * 64)


def test_one_byte_changes_the_content_hash(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\\n")
    (model / "sub" / "model.pkl").write_bytes(b"\\x00" * 1000)
    before = content_hash(model)
    (model / "sub" / "model.pkl").write_bytes(b"\\x00" * 999 + b"\\x01")
    assert content_hash(model) != before
