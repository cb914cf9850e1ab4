"""One gRPC channel per generator user, sending ready-serialised requests, with the same recording contract
as the HTTP connection: a status (HTTP-like, so one validity rule serves both) and the answer's size.

Requests are protobuf bytes built once (bench.protocols' gRPC codecs); the channel sends them with identity
serialisers, so the generator pays for no message building per request. Under Locust, grpc's gevent
support must be switched on before the first channel (`use_gevent`), or a call blocks the whole process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc

from bench.load.connection import Reply

# A gRPC status as the sample's status: 200 for an answer, 0 where no answer came (as a refused or timed-out
# HTTP request records), the nearest HTTP status otherwise.
STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 0, grpc.StatusCode.DEADLINE_EXCEEDED: 0,
    grpc.StatusCode.CANCELLED: 0,
}
SERVER_ERROR = 500  # INTERNAL, UNKNOWN, DATA_LOSS, ABORTED


def use_gevent() -> None:
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()


def grpc_target(base_url: str) -> str:
    """host:port of a grpc://host:port base URL."""
    if not base_url.startswith("grpc://"):
        raise ValueError(f"not a grpc:// URL: {base_url!r}")
    return base_url.removeprefix("grpc://").rstrip("/")


def status_of(error: grpc.RpcError) -> int:
    code = error.code() if isinstance(error, grpc.Call) else None
    return STATUS.get(code, SERVER_ERROR) if code is not None else 0


class GrpcConnection:
    """Unary calls of one method on one channel (HTTP/2: the channel reconnects by itself)."""

    def __init__(self, base_url: str, method: str, timeout_s: float,
                 headers: Sequence[tuple[str, str]] = ()) -> None:
        self.timeout_s = timeout_s
        self.metadata = tuple((name.lower(), value) for name, value in headers)  # gRPC metadata keys are lower-case
        self.channel = grpc.insecure_channel(grpc_target(base_url))
        self.call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(method)
        self._request = b""

    def send(self, request: bytes) -> tuple[int, int]:
        try:
            answer = self.call(request, timeout=self.timeout_s, metadata=self.metadata or None)
        except grpc.RpcError as error:
            return status_of(error), 0
        return 200, len(answer)

    def start(self, request: bytes) -> None:
        """A unary call cannot be split: the request is kept and sent by `complete`."""
        self._request = request

    def complete(self) -> Reply:
        sent_at = time.time()
        status, size = self.send(self._request)
        return Reply(status, size, time.time(), sent_at)

    def exchange(self, request: bytes) -> tuple[int, bytes, str]:
        """For the parity check: the status, the answer's bytes and the server's message on failure."""
        try:
            answer: bytes = self.call(request, timeout=self.timeout_s, metadata=self.metadata or None)
        except grpc.RpcError as error:
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            return status_of(error), b"", str(details or "")
        return 200, answer, ""

    def close(self) -> None:
        self.channel.close()
