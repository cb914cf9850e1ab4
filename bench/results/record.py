"""The base of every results model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Base of every results model: immutable, and a misspelled field is an error, not a silent None."""

    model_config = ConfigDict(frozen=True, extra="forbid")
