"""What a run records about the models it served and the pairs it could not measure (schema 11)."""

from __future__ import annotations

from bench.results.record import Record


class ModelRecord(Record):
    """The model version every runtime served (one MLflow artifact for all): a reference model, or a team's
    model (`source` set) with what its MLmodel file says."""

    version: str | None = None
    fingerprint: str | None = None  # a reference model's training fingerprint; a team's model's content hash
    framework: str | None = None
    source: str | None = None  # a team's model: --model as given (credentials redacted)
    resolved: str | None = None  # the version it named: models:/NAME/3, runs:/ID/PATH or a folder
    run_id: str | None = None
    content_hash: str | None = None  # sha256 of the artifact's files
    flavours: tuple[str, ...] = ()
    input_kind: str | None = None  # tensor or dataframe
    inputs: str | None = None  # the signature's inputs, described
    outputs: str | None = None
    predict_fn: str | None = None
    requirements: tuple[str, ...] = ()
    data: str | None = None  # where the golden and load rows came from


class UnsupportedPair(Record):
    """A runtime x model pair the run did not measure: the runtime cannot serve the model, and why."""

    runtime: str
    model: str
    reason: str
