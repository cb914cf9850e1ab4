"""Request bodies: real dataset rows, drawn with a seed and encoded in the runtime's wire protocol.

Both locustfile modes (the harness's load plans and the interactive web UI) send the same kind of
request; encoding a fixed set of bodies once keeps JSON encoding out of the timed path.
"""

from __future__ import annotations

import numpy as np

from bench.protocols import Array, codec_for


def request_bodies(rows: Array, protocol: str, model_name: str, batch_size: int, count: int,
                   seed: int = 0) -> list[bytes]:
    """count bodies of batch_size rows each, picked at random (seeded) from rows."""
    codec = codec_for(protocol)
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        picked = rows[rng.choice(len(rows), size=batch_size, replace=len(rows) < batch_size)]
        bodies.append(codec.encode(picked, model_name))
    return bodies
