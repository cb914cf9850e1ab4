"""What a runtime needs to know about a model before serving it: a reference model of the catalog, or a
team's MLflow model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

InputKind = Literal["tensor", "dataframe"]
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)


@dataclass(frozen=True)
class ModelSpec:
    """A model to serve: a reference model of the catalog, or a team's MLflow model (`source` set).

    What a runtime needs to decide whether it can serve the model (its flavours, its input kind) and how
    closely its answers must agree with the reference."""

    name: str  # what servers, files and results call it
    framework: str  # the flavour that loads it natively: sklearn, pytorch, xgboost...
    description: str
    parity_atol: float
    input_kind: InputKind = "tensor"
    flavours: tuple[str, ...] = ()  # every MLflow flavour the artifact carries (python_function included)
    # reference models only: the scikit-learn dataset they are trained on and their input shape
    dataset: str | None = None
    n_features: int | None = None
    n_classes: int | None = None
    input_dtype: str = "float64"
    source: str | None = None  # a team's model: the MLflow model URI as given (models:/..., runs:/..., a folder)
    prepared: str | None = None  # ...and the folder bench.models.team prepared it in (golden rows, load rows, facts)

    @property
    def all_flavours(self) -> tuple[str, ...]:
        """Its flavours as MLflow records them; unset, its framework's and pyfunc's (as every model logs)."""
        return self.flavours or ("python_function", self.framework)

    @property
    def is_reference(self) -> bool:
        return self.source is None
