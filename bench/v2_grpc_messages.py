"""The Open Inference Protocol v2's gRPC messages, built from a descriptor at import: no generated code.

Only what servebench sends and reads: ModelInferRequest with typed tensor contents, ModelInferResponse
(typed contents or raw_output_contents), and ModelReady. Field numbers are the protocol's
(`inference.GRPCInferenceService` in KServe's grpc_predict_v2.proto); a test checks them against the
classes MLServer generates from that file. The request's and its inputs' `parameters` maps are here (a
DataFrame's columns are sent with content_type parameters); fields left out are skipped as unknown fields
when a server sends them, as protobuf does for any message.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
MODEL_READY = f"/{SERVICE}/ModelReady"

_F = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
# (name, number, type, label, message type)
_CONTENTS = [("bool_contents", 1, _F.TYPE_BOOL), ("int_contents", 2, _F.TYPE_INT32),
             ("int64_contents", 3, _F.TYPE_INT64), ("uint_contents", 4, _F.TYPE_UINT32),
             ("uint64_contents", 5, _F.TYPE_UINT64), ("fp32_contents", 6, _F.TYPE_FLOAT),
             ("fp64_contents", 7, _F.TYPE_DOUBLE), ("bytes_contents", 8, _F.TYPE_BYTES)]


def _message(name: str, fields: list[tuple[str, int, int, int, str | None]],
             nested: list[descriptor_pb2.DescriptorProto] | None = None) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    message.nested_type.extend(nested or [])
    return message


def _parameters_entry() -> descriptor_pb2.DescriptorProto:
    """map<string, InferParameter>, as protobuf encodes a map: a repeated nested entry message."""
    entry = _message("ParametersEntry", [("key", 1, _F.TYPE_STRING, OPTIONAL, None),
                                         ("value", 2, _F.TYPE_MESSAGE, OPTIONAL, ".inference.InferParameter")])
    entry.options.map_entry = True
    return entry


def _parameters(number: int, owner: str) -> tuple[str, int, int, int, str | None]:
    return ("parameters", number, _F.TYPE_MESSAGE, REPEATED, f".inference.{owner}.ParametersEntry")


def _tensor(name: str, owner: str) -> descriptor_pb2.DescriptorProto:
    return _message(name, [("name", 1, _F.TYPE_STRING, OPTIONAL, None), ("datatype", 2, _F.TYPE_STRING, OPTIONAL, None),
                           ("shape", 3, _F.TYPE_INT64, REPEATED, None), _parameters(4, f"{owner}.{name}"),
                           ("contents", 5, _F.TYPE_MESSAGE, OPTIONAL, ".inference.InferTensorContents")],
                    [_parameters_entry()])


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="servebench_v2_grpc.proto", package="inference", syntax="proto3")
    file.message_type.extend([
        _message("InferParameter", [("bool_param", 1, _F.TYPE_BOOL, OPTIONAL, None),
                                    ("int64_param", 2, _F.TYPE_INT64, OPTIONAL, None),
                                    ("string_param", 3, _F.TYPE_STRING, OPTIONAL, None)]),
        _message("InferTensorContents", [(name, number, kind, REPEATED, None) for name, number, kind in _CONTENTS]),
        _message("ModelInferRequest", [
            ("model_name", 1, _F.TYPE_STRING, OPTIONAL, None), ("model_version", 2, _F.TYPE_STRING, OPTIONAL, None),
            ("id", 3, _F.TYPE_STRING, OPTIONAL, None), _parameters(4, "ModelInferRequest"),
            ("inputs", 5, _F.TYPE_MESSAGE, REPEATED, ".inference.ModelInferRequest.InferInputTensor"),
            ("raw_input_contents", 7, _F.TYPE_BYTES, REPEATED, None)],
            [_tensor("InferInputTensor", "ModelInferRequest"), _parameters_entry()]),
        _message("ModelInferResponse", [
            ("model_name", 1, _F.TYPE_STRING, OPTIONAL, None), ("model_version", 2, _F.TYPE_STRING, OPTIONAL, None),
            ("id", 3, _F.TYPE_STRING, OPTIONAL, None),
            ("outputs", 5, _F.TYPE_MESSAGE, REPEATED, ".inference.ModelInferResponse.InferOutputTensor"),
            ("raw_output_contents", 6, _F.TYPE_BYTES, REPEATED, None)],
            [_tensor("InferOutputTensor", "ModelInferResponse")]),
        _message("ModelReadyRequest", [("name", 1, _F.TYPE_STRING, OPTIONAL, None),
                                       ("version", 2, _F.TYPE_STRING, OPTIONAL, None)]),
        _message("ModelReadyResponse", [("ready", 1, _F.TYPE_BOOL, OPTIONAL, None)]),
    ])
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"inference.{name}"))


ModelInferRequest = _class("ModelInferRequest")
ModelInferResponse = _class("ModelInferResponse")
ModelReadyRequest = _class("ModelReadyRequest")
ModelReadyResponse = _class("ModelReadyResponse")
