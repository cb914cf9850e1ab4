"""Parity before performance: a runtime must answer the model's golden inputs like the reference does.

The golden batch is sent whole (the batch path) and its first row alone (the single-row path, which some
servers reshape differently); the largest absolute difference over both must stay within the model's
tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import requests

from bench.models.registry import LocalModel
from bench.protocols import ProtocolError, codec_for
from bench.targets.base import Endpoint

REQUEST_TIMEOUT_S = 60


@dataclass(frozen=True)
class ParityResult:
    ok: bool
    max_abs_diff: float | None
    rows: int
    error: str | None = None
    answered: bool = False  # the server answered with predictions (so a failure is a mismatch)


def check_parity(endpoint: Endpoint, model: LocalModel, tolerance: float | None = None) -> ParityResult:
    """The golden rows through the endpoint, compared within the model's tolerance (or the runtime's)."""
    atol = model.spec.parity_atol if tolerance is None else tolerance
    codec = codec_for(endpoint.protocol)
    batches = [(model.golden_inputs, model.golden_outputs), (model.golden_inputs[:1], model.golden_outputs[:1])]
    worst = 0.0
    rows = 0
    with requests.Session() as session:
        for inputs, expected in batches:
            try:
                response = session.post(endpoint.predict_url, data=codec.encode(inputs, model.name),
                                        headers={**dict(endpoint.headers), "Content-Type": codec.content_type},
                                        timeout=REQUEST_TIMEOUT_S, verify=endpoint.tls_verify)
            except requests.RequestException as exc:
                return ParityResult(False, None, rows, f"request failed: {type(exc).__name__}: {exc}")
            if response.status_code != 200:
                snippet = response.text[:300].replace("\n", " ")
                return ParityResult(False, None, rows, f"HTTP {response.status_code}: {snippet}")
            try:
                answer = codec.decode(response.content)
            except ProtocolError as exc:
                return ParityResult(False, None, rows, f"undecodable answer: {exc}")
            if answer.shape != expected.shape:
                return ParityResult(False, None, rows,
                                    f"answer shape {list(answer.shape)}, expected {list(expected.shape)}", True)
            worst = max(worst, float(np.max(np.abs(answer - expected))))
            rows += len(inputs)
    ok = worst <= atol
    error = None if ok else f"max abs diff {worst:.3g} over tolerance {atol:g}"
    return ParityResult(ok, worst, rows, error, True)
