"""A team's DataFrame over every wire protocol: column names and types kept, labels decoded as strings, and
the framed bodies file the generator reads. Pure logic; the real servers are in tests/integration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.load.bodies import pack_bodies, read_bodies, request_bodies, unpack_bodies, write_bodies
from bench.measure.parity import label_mismatch
from bench.protocols import CODECS, ProtocolError, as_predictions
from bench.v2_grpc_messages import ModelInferRequest


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"plan": ["basic", "plus"], "autopay": [True, False], "calls": np.array([2, 0], np.int64),
                         "charges": [54.25, 10.5], "ratio": np.array([0.5, 0.25], np.float32)})


def test_kserve_v1_sends_one_object_per_row_with_json_types(frame: pd.DataFrame) -> None:
    body = json.loads(CODECS["kserve-v1"].encode(frame, "m"))
    assert body == {"instances": [
        {"plan": "basic", "autopay": True, "calls": 2, "charges": 54.25, "ratio": 0.5},
        {"plan": "plus", "autopay": False, "calls": 0, "charges": 10.5, "ratio": 0.25}]}
    assert type(body["instances"][0]["calls"]) is int and type(body["instances"][0]["autopay"]) is bool


def test_mlflow_gets_dataframe_split_and_seldon_json_data(frame: pd.DataFrame) -> None:
    split = {"columns": ["plan", "autopay", "calls", "charges", "ratio"],
             "data": [["basic", True, 2, 54.25, 0.5], ["plus", False, 0, 10.5, 0.25]]}
    assert json.loads(CODECS["mlflow-invocations"].encode(frame, "m")) == {"dataframe_split": split}
    assert json.loads(CODECS["seldon"].encode(frame, "m")) == {"jsonData": split}


def test_v2_rest_sends_one_typed_input_per_column_as_a_pandas_request(frame: pd.DataFrame) -> None:
    body = json.loads(CODECS["v2"].encode(frame, "m"))
    assert body["parameters"] == {"content_type": "pd"}
    by_name = {tensor["name"]: tensor for tensor in body["inputs"]}
    assert [t["name"] for t in body["inputs"]] == list(frame.columns)
    assert {name: t["datatype"] for name, t in by_name.items()} == {
        "plan": "BYTES", "autopay": "BOOL", "calls": "INT64", "charges": "FP64", "ratio": "FP32"}
    assert by_name["plan"]["parameters"] == {"content_type": "str"} and "parameters" not in by_name["calls"]
    assert all(t["shape"] == [2, 1] for t in body["inputs"])
    assert by_name["plan"]["data"] == ["basic", "plus"] and by_name["autopay"]["data"] == [True, False]


def test_v2_grpc_sends_typed_contents_and_content_types(frame: pd.DataFrame) -> None:
    request = ModelInferRequest()
    request.ParseFromString(CODECS["v2-grpc"].encode(frame, "m"))
    assert request.model_name == "m" and request.parameters["content_type"].string_param == "pd"
    tensors = {t.name: t for t in request.inputs}
    assert list(tensors["plan"].contents.bytes_contents) == [b"basic", b"plus"]
    assert tensors["plan"].parameters["content_type"].string_param == "str"
    assert list(tensors["autopay"].contents.bool_contents) == [True, False]
    assert list(tensors["calls"].contents.int64_contents) == [2, 0]
    assert list(tensors["charges"].contents.fp64_contents) == [54.25, 10.5]
    assert list(tensors["ratio"].contents.fp32_contents) == [0.5, 0.25]
    assert [list(t.shape) for t in request.inputs] == [[2, 1]] * 5


@pytest.mark.parametrize("protocol", ["kserve-v1", "mlflow-invocations"])
def test_labels_and_records_decode_as_predictions(protocol: str) -> None:
    labels = CODECS[protocol].decode(json.dumps({"predictions": ["churn", "stay"]}).encode())
    assert labels.shape == (2, 1) and labels.dtype == object and labels[1, 0] == "stay"
    records = CODECS[protocol].decode(json.dumps({"predictions": [{"p": 0.25, "q": 0.75}]}).encode())
    assert records.dtype == np.float64 and records.tolist() == [[0.25, 0.75]]


def test_v2_bytes_outputs_are_labels_but_numeric_datatypes_must_hold_numbers() -> None:
    body = {"outputs": [{"name": "o", "datatype": "BYTES", "shape": [2], "data": ["churn", "stay"]}]}
    assert CODECS["v2"].decode(json.dumps(body).encode()).ravel().tolist() == ["churn", "stay"]
    body["outputs"][0]["datatype"] = "FP64"
    with pytest.raises(ProtocolError, match="non-numeric"):
        CODECS["v2"].decode(json.dumps(body).encode())


def test_seldon_json_data_answers_decode() -> None:
    answer = CODECS["seldon"].decode(json.dumps({"jsonData": {"predictions": ["stay"]}}).encode())
    assert answer.tolist() == [["stay"]]


def test_labels_compare_exactly_and_say_which_row_differs() -> None:
    expected = as_predictions(["churn", "stay", "stay"], "golden")
    assert label_mismatch(as_predictions(["churn", "stay", "stay"], "answer"), expected) is None
    problem = label_mismatch(as_predictions(["churn", "churn", "stay"], "answer"), expected)
    assert problem is not None and problem.startswith("1 of 3 rows") and "row 1" in problem
    assert label_mismatch(np.zeros((2, 1)), np.zeros((2, 1))) is None  # numbers go by the tolerance instead


def test_bodies_draw_dataframe_rows_with_the_seed(frame: pd.DataFrame) -> None:
    first = request_bodies(frame, "kserve-v1", "m", batch_size=2, count=4, seed=3)
    assert first == request_bodies(frame, "kserve-v1", "m", batch_size=2, count=4, seed=3)
    assert all(len(json.loads(body)["instances"]) == 2 for body in first)


def test_a_bodies_file_round_trips_and_refuses_what_it_is_not(tmp_path: Path) -> None:
    bodies = [b'{"a": 1}', b"", b"\x00\x01binary"]
    assert read_bodies(write_bodies(tmp_path / "b.bin", bodies)) == bodies
    with pytest.raises(ValueError, match="not a servebench bodies file"):
        unpack_bodies(b"\x93NUMPY")
    with pytest.raises(ValueError, match="truncated"):
        unpack_bodies(pack_bodies([b"abcdef"])[:-2])
