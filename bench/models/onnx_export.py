"""A team's model as ONNX, for a runtime that serves an ONNX file (runtime.yaml `artifact: onnx-export`).

Why: such a runtime loads neither MLflow nor the model's framework, so a team's model reaches it only
through a converter (bench.models.onnx_convert: skl2onnx for scikit-learn, torch.onnx's TorchScript exporter
for PyTorch). The export is made here, in the harness, run with onnxruntime on the golden rows and held to the
model's own reference answers (labels exactly, numbers within FLOAT_ATOL); a model the converter refuses, or
whose export answers differently, is unsupported with that one-line reason, and the other runtimes go on.

Beside the local copy (<team>/<name>/<hash16>/model) the export lives in <hash16>/onnx-export/: model.onnx and
servebench-onnx.json (the inputs with their ONNX types, the output that answers, the golden sets it was
checked against), which the runtime reads. Both are reused while the golden rows stay the same; a refusal is
remembered (<hash16>/onnx-unsupported.json) per golden set and converter versions. A reference model keeps
the model.onnx that `bench models build` wrote into its own MLflow folder and checked there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bench.models.onnx_convert import (
    DESCRIPTION_FORMAT,
    ONNX_FILE,
    OnnxInput,
    Precision,
    Refused,
    feeds,
    message,
    package_version,
    sklearn_export,
    torch_export,
)
from bench.protocols import Array, Rows

if TYPE_CHECKING:
    from bench.models.registry import LocalModel

__all__ = ["DESCRIPTION_FILE", "EXPORT_FOLDER", "ONNX_FILE", "OnnxExport", "OnnxInput", "OnnxUnsupported",
           "export_for", "golden_digest"]

EXPORT_FOLDER = "onnx-export"  # beside the local copy's model/ folder
DESCRIPTION_FILE = "servebench-onnx.json"  # what the runtime reads: inputs, the answering output
REFUSALS_FILE = "onnx-unsupported.json"
# how closely the export's numbers must agree with the reference, by the reference answers' dtype
FLOAT_ATOL = {"float32": 1e-5, "float16": 1e-2}
DEFAULT_ATOL = 1e-6
REASON_CHARS = 240


@dataclass(frozen=True)
class OnnxExport:
    """A checked ONNX export: the folder a runtime serves (MODEL_DIR) and what it holds."""

    folder: Path
    converter: str  # e.g. "skl2onnx 1.20.0"
    input_kind: Literal["tensor", "dataframe"]
    inputs: tuple[OnnxInput, ...]
    output: str | None  # the ONNX output that answers; None: the last (a reference model's export)
    answers: Literal["labels", "numbers"]
    max_abs_diff: float | None  # against the golden outputs (None: checked by `bench models build`)
    reused: bool = False

    @property
    def model_file(self) -> Path:
        return self.folder / ONNX_FILE


@dataclass(frozen=True)
class OnnxUnsupported:
    """Why there is no ONNX export to serve: the converter's own reason, or how its answers differ."""

    reason: str


def export_for(model: LocalModel) -> OnnxExport | OnnxUnsupported:
    """The checked ONNX export of the model, made now or reused, or why there is none."""
    if model.facts is None:
        return _reference_export(model)
    folder = model.model_dir.parent / EXPORT_FOLDER
    golden = golden_digest(model)
    reused = _reuse(folder, model, golden)
    if reused is not None:
        return reused
    refusals_file = model.model_dir.parent / REFUSALS_FILE
    refusal_key = f"{golden}:{_converter_versions()}"
    remembered = _read_json(refusals_file).get(refusal_key)
    if isinstance(remembered, str):
        return OnnxUnsupported(remembered)
    try:
        onnx_bytes, description, worst = _convert_and_check(model)
    except Refused as refused:
        reason = _one_line(str(refused))
        _write_json(refusals_file, {**_read_json(refusals_file), refusal_key: reason})
        return OnnxUnsupported(reason)
    description["checked"] = [{"golden": golden, "rows": len(model.golden_outputs), "max_abs_diff": worst}]
    _publish(folder, onnx_bytes, description)
    return _export_of(folder, description, worst, reused=False)


def golden_digest(model: LocalModel) -> str:
    """The golden rows and answers an export was checked against, as a short hash."""
    digest = hashlib.sha256()
    inputs = model.golden_inputs
    if isinstance(inputs, np.ndarray):
        digest.update(f"{inputs.dtype}:{inputs.shape}:".encode() + np.ascontiguousarray(inputs).tobytes())
    else:
        digest.update(json.dumps({"columns": [str(c) for c in inputs.columns],
                                  "dtypes": [str(d) for d in inputs.dtypes],
                                  "values": inputs.to_numpy().tolist()}, default=str).encode())
    digest.update(json.dumps(model.golden_outputs.tolist(), default=str).encode())
    return digest.hexdigest()[:16]


# ---- the reference models' export, and reusing a team's ------------------------------------------------------


def _reference_export(model: LocalModel) -> OnnxExport | OnnxUnsupported:
    """A reference model's model.onnx, exported and checked by `bench models build` in its own folder."""
    if not (model.model_dir / ONNX_FILE).is_file():
        return OnnxUnsupported(f"{model.name} has no {ONNX_FILE} in its folder: run `bench models build`")
    import onnx

    declared = onnx.load(str(model.model_dir / ONNX_FILE), load_external_data=False).graph.input[0]
    onnx_type = "tensor(float)" if declared.type.tensor_type.elem_type == onnx.TensorProto.FLOAT else "tensor(double)"
    return OnnxExport(model.model_dir, "bench models build", "tensor", (OnnxInput(declared.name, "number", onnx_type),),
                      None, "numbers", None, reused=True)


def _reuse(folder: Path, model: LocalModel, golden: str) -> OnnxExport | None:
    """An export already in the folder, checked against these golden rows (now, if it was not yet)."""
    description = _read_json(folder / DESCRIPTION_FILE)
    if description.get("format") != DESCRIPTION_FORMAT or not (folder / ONNX_FILE).is_file():
        return None
    checked = [entry for entry in description.get("checked", []) if isinstance(entry, dict)]
    known = next((entry for entry in checked if entry.get("golden") == golden), None)
    if known is not None:
        return _export_of(folder, description, float(known.get("max_abs_diff", 0.0)), reused=True)
    try:  # other golden rows (another --data): the same export, checked against them too
        worst = _check((folder / ONNX_FILE).read_bytes(), description, model)
    except Refused:
        return None  # converted afresh (and refused with the reason then)
    description["checked"] = [*checked, {"golden": golden, "rows": len(model.golden_outputs), "max_abs_diff": worst}]
    _write_json(folder / DESCRIPTION_FILE, description)
    return _export_of(folder, description, worst, reused=True)


def _export_of(folder: Path, description: dict[str, Any], worst: float, reused: bool) -> OnnxExport:
    inputs = tuple(OnnxInput(str(i["name"]), i["kind"], str(i["type"])) for i in description["inputs"])
    return OnnxExport(folder, str(description["converter"]), description["input_kind"], inputs,
                      str(description["output"]), description["answers"], worst, reused)


# ---- converting ------------------------------------------------------------------------------------------


def _convert_and_check(model: LocalModel) -> tuple[bytes, dict[str, Any], float]:
    """Convert by the model's flavour and check; scikit-learn numbers in double first (as it computes), then
    in float32 when skl2onnx's double graph fails (a ColumnTransformer mixing OneHotEncoder's float output
    with double columns is one): the check decides. The first attempt's reason is the one given."""
    assert model.facts is not None
    flavours = model.facts.flavours
    if "sklearn" in flavours:
        first: Refused | None = None
        tries: tuple[Precision, ...] = ("double",) if isinstance(model.golden_inputs, np.ndarray) \
            else ("double", "float")
        for precision in tries:
            try:
                onnx_bytes, description = sklearn_export(model, precision)
                return onnx_bytes, description, _check(onnx_bytes, description, model)
            except Refused as refused:
                first = first or refused
        assert first is not None
        raise first
    if "pytorch" in flavours:
        onnx_bytes, description = torch_export(model)
        return onnx_bytes, description, _check(onnx_bytes, description, model)
    raise Refused(f"the ONNX export converts scikit-learn and PyTorch models; this one is {model.facts.framework}")


# ---- checking against the reference answers ---------------------------------------------------------------


def _check(onnx_bytes: bytes, description: dict[str, Any], model: LocalModel) -> float:
    """The export through onnxruntime on the golden rows against the reference answers; the largest
    numeric difference (0 for labels), or Refused saying how they differ."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise Refused(f"onnxruntime cannot load the {description['converter']} export: {message(exc)}") from None
    try:
        answer = session.run([description["output"]], feeds(model.golden_inputs, description))[0]
    except Exception as exc:
        raise Refused(f"onnxruntime cannot run the {description['converter']} export: {message(exc)}") from None
    expected = model.golden_outputs
    got = np.asarray(answer)
    got = got.reshape(len(got), -1) if got.ndim != 2 else got
    if got.shape != expected.shape:
        raise Refused(f"the ONNX export answers {list(got.shape)} where the model answers {list(expected.shape)}")
    if expected.dtype == object or got.dtype.kind in "OUS":
        text = np.vectorize(str, otypes=[object])(got)
        differs = (text != expected.astype(str)).any(axis=1)
        worst = 0.0
        detail = ""
    else:
        atol = _tolerance(model)
        gap = np.abs(got.astype(np.float64) - expected)
        differs = ~(gap <= atol).all(axis=1)  # NaN differs too
        worst = float(np.nanmax(gap)) if gap.size else 0.0
        detail = f", largest difference {worst:.3g} > {atol:g}"
    if differs.any():
        row = int(np.argmax(differs))
        if not detail and _tied(session, description, model.golden_inputs, differs):
            detail = "; each a tie between classes' probabilities, which onnxruntime breaks the other way"
        raise Refused(f"the ONNX export answers {int(differs.sum())} of {len(expected)} rows differently (row "
                      f"{row}: {got[row].tolist()} where the model says {expected[row].tolist()}{detail})")
    return worst


def _tied(session: Any, description: dict[str, Any], golden: Rows, differs: Array) -> bool:
    """Whether every row whose label differs has two classes at the top probability: scikit-learn takes the
    first, onnxruntime's tree ensembles the last (an even number of trees voting half and half)."""
    names = [output.name for output in session.get_outputs()]
    if "probabilities" not in names:
        return False
    probabilities = np.asarray(session.run(["probabilities"], feeds(golden, description))[0])[differs]
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        return False
    top = np.sort(probabilities, axis=1)[:, -2:]
    return bool(np.all(np.abs(top[:, 1] - top[:, 0]) <= 1e-9))


def _tolerance(model: LocalModel) -> float:
    dtype = model.facts.output_dtype if model.facts is not None else "float64"
    return FLOAT_ATOL.get(dtype, DEFAULT_ATOL)


# ---- reasons and files --------------------------------------------------------------------------------------


def _one_line(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 3] + "..."


def _converter_versions() -> str:
    return ",".join(f"{name}={package_version(name)}" for name in ("skl2onnx", "onnx", "torch", "onnxruntime"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Replaced whole (another process may be reading it)."""
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        json.dump(value, out, indent=1)
    os.replace(staging, path)


def _publish(folder: Path, onnx_bytes: bytes, description: dict[str, Any]) -> None:
    """The folder appears complete or not at all; one already there (stale, or another process's) is moved
    aside first (a server that loaded it keeps its open copy)."""
    staging = Path(tempfile.mkdtemp(prefix=".onnx-staging-", dir=folder.parent))
    retired = folder.parent / f".onnx-retired-{staging.name}"
    try:
        (staging / ONNX_FILE).write_bytes(onnx_bytes)
        (staging / DESCRIPTION_FILE).write_text(json.dumps(description, indent=1))
        if folder.exists():
            folder.rename(retired)
        staging.rename(folder)
    except OSError:  # another process published at the same moment: theirs is as good
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
