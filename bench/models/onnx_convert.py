"""Converting a team's model to ONNX: skl2onnx for scikit-learn, torch.onnx's TorchScript exporter for PyTorch.

Why a module of its own: what each converter needs (typed inputs per DataFrame column, booleans cast inside
the graph, the output that answers the model's predict function) and how its failures read as one line are
the converters' business; bench.models.onnx_export checks, keeps and reuses what comes out. Every failure is
Refused, whose message is the reason a runtime serving the export is unsupported.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bench.protocols import Array, Rows

if TYPE_CHECKING:
    import pandas as pd

    from bench.models.registry import LocalModel

ONNX_FILE = "model.onnx"
DESCRIPTION_FORMAT = 1
OPSETS = {"": 17, "ai.onnx.ml": 3}  # as the reference models' exports

# a tensor's dtype as the ONNX type of its input, and each input type as the numpy dtype it is fed as
_ONNX_NUMBER_TYPES = {"float64": "tensor(double)", "float32": "tensor(float)", "int64": "tensor(int64)",
                      "int32": "tensor(int32)"}
_NUMPY_TYPES: dict[str, Any] = {"tensor(bool)": np.bool_, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                                "tensor(double)": np.float64, "tensor(float)": np.float32}

ColumnKind = Literal["string", "boolean", "integer", "number"]
Precision = Literal["double", "float"]


@dataclass(frozen=True)
class OnnxInput:
    """One input of the export: a DataFrame column (or the whole tensor), the JSON values it takes (its
    kind) and the ONNX type the runtime must feed it as."""

    name: str
    kind: ColumnKind
    onnx_type: str  # tensor(string), tensor(bool), tensor(int64), tensor(double), tensor(float)


class Refused(Exception):
    """A conversion or check that failed; its message is the one-line reason."""


def sklearn_export(model: LocalModel, precision: Precision) -> tuple[bytes, dict[str, Any]]:
    """skl2onnx over the estimator MLflow logged: one [None, 1] input per DataFrame column (or one tensor),
    zipmap off; the answering output chosen by the model's predict function."""
    import mlflow.sklearn
    from sklearn.base import is_classifier

    assert model.facts is not None
    estimator = _loaded(lambda: mlflow.sklearn.load_model(str(model.model_dir)), "scikit-learn")
    predict_fn = model.facts.predict_fn or "predict"
    if predict_fn not in ("predict", "predict_proba"):
        raise Refused(f"the model answers with {predict_fn}, which skl2onnx's outputs do not give")
    if predict_fn == "predict_proba" and not is_classifier(estimator):
        raise Refused(f"the model answers with predict_proba but {type(estimator).__name__} is no classifier")
    inputs = _inputs_of(model.golden_inputs, precision)
    bools = {i.name for i in inputs if i.kind == "boolean"}
    width = model.golden_inputs.shape[1] if isinstance(model.golden_inputs, np.ndarray) else 1
    converter = f"skl2onnx {package_version('skl2onnx')}"
    try:
        from skl2onnx import convert_sklearn

        exported = convert_sklearn(estimator, initial_types=[(i.name, _skl2onnx_type(i, width)) for i in inputs],
                                   options={"zipmap": False}, target_opset=OPSETS)
    except Exception as exc:  # a converter raises anything: each is its reason
        raise Refused(f"{converter} cannot convert {_failing_estimator(exc, estimator)}: {message(exc)}") from None
    if bools:
        _bool_inputs(exported, bools)
    outputs = [output.name for output in exported.graph.output]
    index = 1 if predict_fn == "predict_proba" else 0
    if len(outputs) <= index:
        raise Refused(f"{converter} gave outputs {outputs}, none of which answers {predict_fn}")
    labels = predict_fn == "predict" and model.golden_outputs.dtype == object
    return bytes(exported.SerializeToString()), describe(converter, model.golden_inputs, inputs, outputs[index],
                                                          labels)


def torch_export(model: LocalModel) -> tuple[bytes, dict[str, Any]]:
    """torch.onnx's TorchScript exporter (dynamo=False, as the reference nets), a dynamic batch axis; the mode as
    loaded (eval where the module has modes: a program saved by torch.export refuses train() and eval())."""
    import mlflow.pytorch
    import torch

    golden = model.golden_inputs
    if not isinstance(golden, np.ndarray):
        raise Refused("the ONNX export takes a PyTorch model's tensor input; this one takes a DataFrame")
    net = _loaded(lambda: mlflow.pytorch.load_model(str(model.model_dir), map_location="cpu"), "PyTorch")
    converter = f"torch.onnx {package_version('torch').split('+')[0]}"
    with tempfile.TemporaryDirectory(prefix="servebench-onnx-") as scratch:
        path = Path(scratch) / ONNX_FILE
        with contextlib.suppress(NotImplementedError):  # a torch.export program (MLflow 3's .pt2) has no modes
            net.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (torch.from_numpy(np.ascontiguousarray(golden[:1])),), str(path),
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "rows"}, "output": {0: "rows"}},
                                  opset_version=OPSETS[""], dynamo=False, training=torch.onnx.TrainingMode.PRESERVE)
        except Exception as exc:
            raise Refused(f"{converter} cannot export {type(net).__name__}: {message(exc)}") from None
        onnx_bytes = path.read_bytes()
    onnx_type = _ONNX_NUMBER_TYPES.get(str(golden.dtype))
    if onnx_type is None:
        raise Refused(f"the net takes {golden.dtype} tensors; the ONNX export takes numbers")
    kind: ColumnKind = "integer" if golden.dtype.kind in "iu" else "number"
    return onnx_bytes, describe(converter, golden, (OnnxInput("input", kind, onnx_type),), "output", False)


def _loaded(load: Any, framework: str) -> Any:
    try:
        return load()
    except Exception as exc:
        raise Refused(f"the harness cannot load the {framework} model: {message(exc)}") from None


def _inputs_of(golden: Rows, precision: Precision) -> tuple[OnnxInput, ...]:
    """One input per DataFrame column, typed by its dtype (booleans go in as bool, then cast to int64 inside
    the graph: skl2onnx's OneHotEncoder takes no bool); a tensor as one input named 'input'."""
    number = "tensor(double)" if precision == "double" else "tensor(float)"
    if isinstance(golden, np.ndarray):
        if golden.dtype.kind not in "iuf":
            raise Refused(f"the model takes {golden.dtype} tensors; the ONNX export takes numbers")
        kind: ColumnKind = "integer" if golden.dtype.kind in "iu" else "number"
        return (OnnxInput("input", kind, _ONNX_NUMBER_TYPES.get(str(golden.dtype), number)),)
    return tuple(_column_input(str(name), golden[name], precision) for name in golden.columns)


def _column_input(name: str, column: pd.Series[Any], precision: Precision) -> OnnxInput:
    from pandas.api import types

    if types.is_bool_dtype(column.dtype):
        return OnnxInput(name, "boolean", "tensor(bool)")
    if types.is_integer_dtype(column.dtype):
        return OnnxInput(name, "integer", "tensor(int64)" if precision == "double" else "tensor(float)")
    if types.is_float_dtype(column.dtype):
        return OnnxInput(name, "number", "tensor(double)" if precision == "double" else "tensor(float)")
    if types.is_string_dtype(column.dtype) or types.is_object_dtype(column.dtype):
        if not all(isinstance(value, str) for value in column.tolist()):
            raise Refused(f"column '{name}' mixes strings with other values; the ONNX export takes strings")
        return OnnxInput(name, "string", "tensor(string)")
    raise Refused(f"column '{name}' is {column.dtype}, which the ONNX export does not take")


def _skl2onnx_type(column: OnnxInput, width: int) -> Any:
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int32TensorType,
        Int64TensorType,
        StringTensorType,
    )

    # a bool column converts as int64 (0/1, as scikit-learn treats it) and is cast inside the graph afterwards
    kinds = {"tensor(string)": StringTensorType, "tensor(bool)": Int64TensorType, "tensor(int64)": Int64TensorType,
             "tensor(int32)": Int32TensorType, "tensor(double)": DoubleTensorType, "tensor(float)": FloatTensorType}
    return kinds[column.onnx_type]([None, width])


def _bool_inputs(exported: Any, names: set[str]) -> None:
    """Boolean columns declared as bool in the graph, cast to the int64 skl2onnx converted them as."""
    from onnx import TensorProto, helper

    graph = exported.graph
    for declared in graph.input:
        if declared.name not in names:
            continue
        inner = f"{declared.name}__int64"
        for node in graph.node:
            for position, name in enumerate(node.input):
                if name == declared.name:
                    node.input[position] = inner
        declared.type.tensor_type.elem_type = TensorProto.BOOL
        graph.node.insert(0, helper.make_node("Cast", [declared.name], [inner], to=TensorProto.INT64,
                                              name=f"{declared.name}__cast"))


def describe(converter: str, golden: Rows, inputs: tuple[OnnxInput, ...], output: str,
             labels: bool) -> dict[str, Any]:
    """servebench-onnx.json's contents: what the runtime needs to feed the export and pick its answer."""
    return {"format": DESCRIPTION_FORMAT, "converter": converter,
            "input_kind": "tensor" if isinstance(golden, np.ndarray) else "dataframe",
            "inputs": [{"name": i.name, "kind": i.kind, "type": i.onnx_type} for i in inputs],
            "output": output, "answers": "labels" if labels else "numbers"}


def feeds(golden: Rows, description: dict[str, Any]) -> dict[str, Array]:
    """The golden rows as the runtime feeds them: each column [n, 1] in its input's type, or the tensor."""
    inputs = description["inputs"]
    if isinstance(golden, np.ndarray):
        return {inputs[0]["name"]: golden.astype(_NUMPY_TYPES[inputs[0]["type"]], copy=False)}
    arrays = {}
    for declared in inputs:
        values = golden[declared["name"]].tolist()
        if declared["type"] == "tensor(string)":
            array = np.empty(len(values), dtype=object)
            array[:] = values
        else:
            array = np.asarray(values, dtype=_NUMPY_TYPES[declared["type"]])
        arrays[declared["name"]] = array.reshape(-1, 1)
    return arrays


# ---- reasons ---------------------------------------------------------------------------------------------


def _failing_estimator(exc: BaseException, model: Any) -> str:
    """The estimator skl2onnx was converting when it failed (its converter's `operator.raw_operator`), else
    the model's own class: 'HistGradientBoostingClassifier', not 'Pipeline'."""
    missing = re.search(r"for type '<class '([\w.]+)'>'", str(exc))
    if missing:
        return missing[1].rsplit(".", 1)[-1]
    found = type(model).__name__
    trace = exc.__traceback__
    while trace is not None:
        operator = trace.tb_frame.f_locals.get("operator")
        raw = getattr(operator, "raw_operator", None)
        if raw is not None:
            found = type(raw).__name__
        trace = trace.tb_next
    return found


def message(exc: BaseException) -> str:
    """An exception as one short line: skl2onnx's missing converter said plainly, a node's attribute dump
    left out, the underlying cause added."""
    text = str(exc).strip()
    if type(exc).__name__ in ("MissingShapeCalculator", "MissingConverter"):
        return "skl2onnx has no converter for it"
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r" and attributes=\{.*", "", line)
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        line += f" ({type(cause).__name__}: {str(cause).strip().splitlines()[0]})"
    return line


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
