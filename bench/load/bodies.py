"""Request bodies: rows drawn with a seed and encoded in the runtime's wire protocol, or a team's own bodies.

The harness encodes a fixed set of bodies once, before the load, and hands the generator a bodies file:
encoding (JSON, DataFrame columns, protobuf) stays out of the timed path and out of the generator's
processes, which need neither pandas nor the model, and remote workers receive the same bytes.

The file is framed, not pickled: a magic line, then each body as a 4-byte little-endian length and its bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from bench.protocols import Rows, codec_for

MAGIC = b"servebench-bodies 1\n"
LENGTH = struct.Struct("<I")


def request_bodies(rows: Rows, protocol: str, model_name: str, batch_size: int, count: int,
                   seed: int = 0) -> list[bytes]:
    """count bodies of batch_size rows each, picked at random (seeded) from rows (an array or a DataFrame)."""
    codec = codec_for(protocol)
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        picked = rng.choice(len(rows), size=batch_size, replace=len(rows) < batch_size)
        batch = rows[picked] if isinstance(rows, np.ndarray) else rows.iloc[picked].reset_index(drop=True)
        bodies.append(codec.encode(batch, model_name))
    return bodies


def pack_bodies(bodies: list[bytes]) -> bytes:
    return MAGIC + b"".join(LENGTH.pack(len(body)) + body for body in bodies)


def unpack_bodies(data: bytes) -> list[bytes]:
    """The bodies of a packed file; ValueError if it is not one (truncated, or another format)."""
    if not data.startswith(MAGIC):
        raise ValueError("not a servebench bodies file")
    bodies, offset = [], len(MAGIC)
    while offset < len(data):
        if offset + LENGTH.size > len(data):
            raise ValueError("bodies file truncated")
        (size,) = LENGTH.unpack_from(data, offset)
        offset += LENGTH.size
        if offset + size > len(data):
            raise ValueError("bodies file truncated")
        bodies.append(data[offset:offset + size])
        offset += size
    if not bodies:
        raise ValueError("bodies file holds no body")
    return bodies


def write_bodies(path: Path, bodies: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pack_bodies(bodies))
    return path


def read_bodies(path: Path) -> list[bytes]:
    return unpack_bodies(path.read_bytes())
