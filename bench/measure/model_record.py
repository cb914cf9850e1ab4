"""What the results say about the model every runtime served."""

from __future__ import annotations

from bench.models.registry import LocalModel
from bench.results.schema import ModelRecord


def model_record(model: LocalModel) -> ModelRecord:
    """What results.json says about the model every runtime served."""
    facts = model.facts
    if facts is None:
        return ModelRecord(version=model.version, fingerprint=model.fingerprint, framework=model.spec.framework,
                           input_kind=model.spec.input_kind, flavours=model.spec.flavours)
    return ModelRecord(version=model.version, fingerprint=model.fingerprint, framework=facts.framework,
                       source=facts.uri, resolved=facts.resolved, run_id=facts.run_id,
                       content_hash=facts.content_hash, flavours=facts.flavours, input_kind=model.spec.input_kind,
                       inputs=facts.inputs, outputs=facts.outputs, predict_fn=facts.predict_fn,
                       requirements=facts.requirements, data=facts.data)
