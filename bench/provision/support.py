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
from bench.provision.envs import Report
from bench.provision.model_envs import ModelEnv, Unsupported, model_env


def why_unsupported(runtime: RuntimeSpec, model: LocalModel, report: Report = lambda _r, _s: None, *,
                    environments: bool = False) -> str | None:
    """Why the runtime cannot serve the model, or None when it can. environments: the target runs servers in
    environments built here (local processes), so a team's model's requirements must be met by one, which
    may be built now (only pip can say that some requirements do not go together); an endpoint or an image
    made elsewhere has no environment here to judge."""
    reason = runtime.unsupported_reason(model.spec)
    if reason is None and runtime.artifact == "onnx-export":
        export = export_for(model)
        if isinstance(export, OnnxUnsupported):
            return export.reason
    if reason is None and environments:
        found = serving_env(runtime, model, report)
        if isinstance(found, Unsupported):
            return found.reason
    return reason


def serving_env(runtime: RuntimeSpec, model: LocalModel,
                report: Report = lambda _r, _s: None) -> ModelEnv | Unsupported | None:
    """The environment that serves a team's model (the runtime's own, or one that adds what the model's
    requirements name), or why none can; None for a reference model (the runtime's own environment, as
    always) and for a runtime that loads no MLflow artifact."""
    if model.facts is None or runtime.artifact != "mlflow-model":
        return None
    return model_env(runtime, list(model.facts.requirements), list(model.spec.all_flavours),
                     report)


def env_note(found: ModelEnv) -> str:
    """What the results say about the model's environment: what was added, what differs from its records."""
    added = f"added {', '.join(found.plan.missing)}" if found.derived else "the runtime's own"
    differs = "; ".join(str(difference) for difference in found.differences)
    return f"{added}{'; differs: ' + differs if differs else ''}"


def served(runtime: RuntimeSpec, model: LocalModel) -> LocalModel:
    """The model as the runtime loads it: {model_dir} is the MLflow model folder, or the folder of its checked
    ONNX export (golden rows and answers unchanged: parity holds the export to the model's own answers)."""
    if runtime.artifact != "onnx-export":
        return model
    export = export_for(model)
    if isinstance(export, OnnxUnsupported):
        raise BenchError(f"{runtime.name} cannot serve {model.name}: {export.reason}", hint="choose another runtime")
    return replace(model, model_dir=export.folder)
