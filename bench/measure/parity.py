"""Parity before performance: a runtime must answer the model's golden inputs like the reference does.

The golden batch is sent whole (the batch path) and its first row alone (the single-row path, which some
servers reshape differently); the largest absolute difference over both must stay within the model's
tolerance. Labels (strings) must match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import requests

from bench.load.grpc_connection import GrpcConnection
from bench.models.registry import LocalModel
from bench.models.request_bodies import read_lines
from bench.protocols import Array, Codec, ProtocolError, codec_for
from bench.targets.base import Endpoint

REQUEST_TIMEOUT_S = 60


@dataclass(frozen=True)
class ParityResult:
    ok: bool
    max_abs_diff: float | None
    rows: int
    error: str | None = None
    answered: bool = False  # the server answered with predictions (so a failure is a mismatch)
    compared: bool = True  # False: a team's own bodies, answered 2xx but with nothing to compare against


class _Client:
    """One request at a time to the endpoint, over its codec's transport: (status, body, error text)."""

    def __init__(self, endpoint: Endpoint, codec: Codec) -> None:
        self.endpoint, self.codec = endpoint, codec
        self.session = requests.Session() if codec.transport == "http" else None
        self.channel = None if self.session else GrpcConnection(endpoint.base_url, endpoint.predict_path,
                                                                REQUEST_TIMEOUT_S, endpoint.headers)

    def exchange(self, body: bytes) -> tuple[int, bytes, str]:
        if self.channel is not None:
            return self.channel.exchange(body)
        assert self.session is not None
        response = self.session.post(self.endpoint.predict_url, data=body, timeout=REQUEST_TIMEOUT_S,
                                     headers={**dict(self.endpoint.headers), "Content-Type": self.codec.content_type},
                                     verify=self.endpoint.tls_verify)
        return response.status_code, response.content, response.text[:300]

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.channel is not None:
            self.channel.close()


def label_mismatch(answer: Array, expected: Array) -> str | None:
    """Where labels are compared (either side holds strings): how many differ and the first, or None."""
    if answer.dtype != object and expected.dtype != object:
        return None
    same = np.asarray(answer.astype(str) == expected.astype(str))
    if same.all():
        return None
    row = int(np.argwhere(~same)[0][0])
    return (f"{int((~same).any(axis=1).sum())} of {len(expected)} rows answer other labels (row {row}: "
            f"{answer[row].tolist()} where the model says {expected[row].tolist()})")


BODIES_CHECKED = 8  # a team's own bodies: the first few must be answered with a 2xx before the load


def check_answers(endpoint: Endpoint, bodies: list[bytes]) -> ParityResult:
    """A team's own bodies: nothing to compare the answers with, but an endpoint that refuses them is not
    load-tested (a wrong URL or protocol would otherwise be measured as fast errors)."""
    client = _Client(endpoint, codec_for(endpoint.protocol))
    try:
        for index, body in enumerate(bodies[:BODIES_CHECKED]):
            try:
                status, _content, text = client.exchange(body)
            except requests.RequestException as exc:
                return ParityResult(False, None, index, f"request failed: {type(exc).__name__}: {exc}")
            if not 200 <= status < 300:
                return ParityResult(False, None, index, f"HTTP {status} to body {index + 1}: "
                                    f"{text.replace(chr(10), ' ')}")
    finally:
        client.close()
    return ParityResult(True, None, min(len(bodies), BODIES_CHECKED), None, True, compared=False)


def check_parity(endpoint: Endpoint, model: LocalModel, tolerance: float | None = None) -> ParityResult:
    """The golden rows through the endpoint, compared within the model's tolerance (or the runtime's)."""
    if model.bodies_file is not None:
        return check_answers(endpoint, read_lines(model.bodies_file))
    atol = model.spec.parity_atol if tolerance is None else tolerance
    codec = codec_for(endpoint.protocol)
    batches = [(model.golden_inputs, model.golden_outputs), (model.golden_inputs[:1], model.golden_outputs[:1])]
    worst = 0.0
    rows = 0
    client = _Client(endpoint, codec)
    try:
        for inputs, expected in batches:
            try:
                status, content, text = client.exchange(codec.encode(inputs, model.name))
            except requests.RequestException as exc:
                return ParityResult(False, None, rows, f"request failed: {type(exc).__name__}: {exc}")
            if status != 200:
                what = f"HTTP {status}" if codec.transport == "http" else f"gRPC error (as HTTP {status})"
                return ParityResult(False, None, rows, f"{what}: {text.replace(chr(10), ' ')}")
            try:
                answer = codec.decode(content)
            except ProtocolError as exc:
                return ParityResult(False, None, rows, f"undecodable answer: {exc}")
            if answer.shape != expected.shape:
                return ParityResult(False, None, rows,
                                    f"answer shape {list(answer.shape)}, expected {list(expected.shape)}", True)
            differing = label_mismatch(answer, expected)
            if differing is not None:
                return ParityResult(False, None, rows, differing, True)
            if expected.dtype != object:
                worst = max(worst, float(np.max(np.abs(answer - expected))))
            rows += len(inputs)
    finally:
        client.close()
    ok = worst <= atol
    error = None if ok else f"max abs diff {worst:.3g} over tolerance {atol:g}"
    return ParityResult(ok, worst, rows, error, True)
