"""Whether a runtime can serve a model at all: a pair it cannot is unsupported (skipped with its reason),
never failed; and the model as the runtime loads it.

The runtime's runtime.yaml decides first (`not_supported:` by model name or framework, `serves:` by flavour
and input kind); a runtime serving a derived artifact (`artifact: onnx-export`) also needs the model's checked
export, which bench.models.onnx_export makes or reuses, or refuses with the converter's reason.
"""

from __future__ import annotations

from dataclasses import replace

from bench.config import RuntimeSpec
from bench.errors import BenchError
from bench.models.onnx_export import OnnxUnsupported, export_for
from bench.models.registry import LocalModel


def why_unsupported(runtime: RuntimeSpec, model: LocalModel) -> str | None:
    """Why the runtime cannot serve the model, or None when it can."""
    reason = runtime.unsupported_reason(model.spec)
    if reason is None and runtime.artifact == "onnx-export":
        export = export_for(model)
        if isinstance(export, OnnxUnsupported):
            return export.reason
    return reason


def served(runtime: RuntimeSpec, model: LocalModel) -> LocalModel:
    """The model as the runtime loads it: {model_dir} is the MLflow model folder, or the folder of its checked
    ONNX export (golden rows and answers unchanged: parity holds the export to the model's own answers)."""
    if runtime.artifact != "onnx-export":
        return model
    export = export_for(model)
    if isinstance(export, OnnxUnsupported):
        raise BenchError(f"{runtime.name} cannot serve {model.name}: {export.reason}", hint="choose another runtime")
    return replace(model, model_dir=export.folder)
