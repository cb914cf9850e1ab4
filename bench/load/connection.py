"""One persistent HTTP/1.1 connection per generator user, sending requests built once, ahead of time.

Locust's FastHttpSession costs most of the generator's CPU per request (URL joining, header merging, a
select() liveness probe, request events and statistics the harness never reads): profiled at 4,000
req/s open loop, 40% of the process's samples sat in FastHttpSession.post. Here every request is a
ready byte string (request line, headers and body encoded once per distinct body), written with one
sendall, and the response is parsed by llhttp (geventhttpclient's C parser, which FastHttpSession uses
too) without building header objects. Only the status and the body's size are kept.

The open-loop generator splits an exchange in two: `start` writes the request at its moment (from the slot
dispatcher) and `complete` (in the user's greenlet) receives the response; the response's arrival time is the
kernel's receive timestamp of its last segment (SO_TIMESTAMPNS, plain TCP), so a response the process handles
late, behind a send that had to be on time, is still timed when it arrived.

A connection the server closed while it sat idle (a keep-alive timeout) is noticed when the next request
gets no byte back; that request is sent once more on a fresh connection, as HTTP clients do for a stale
keep-alive connection. A fresh connection is never retried: its failure is the server's.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import gevent.ssl
from geventhttpclient._parser import HTTPResponseParser

from bench.load.transport import Transport, open_transport

# errno values that mean the peer had already closed the connection when we wrote or read
PEER_CLOSED = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


class ConnectionClosed(OSError):
    """The server closed the connection before a complete response."""


class Reply(NamedTuple):
    status: int
    size: int  # the body's bytes
    received_at: float  # time.time()'s clock: when the last byte arrived (the kernel's stamp where it has one)
    sent_at: float | None = None  # when the request left, if later than its start (a connection opened first)


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    verify_tls: bool = True  # https only: whether to verify the server's certificate
    ca_cert: str | None = None  # https only: the CA bundle to verify it against (default: the system's)

    @classmethod
    def from_url(cls, base_url: str, verify_tls: bool = True, ca_cert: str | None = None) -> Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                   verify_tls, ca_cert)

    def tls_context(self) -> gevent.ssl.SSLContext:
        context = gevent.ssl.create_default_context(cafile=self.ca_cert)
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = gevent.ssl.CERT_NONE
        return context

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def prebuilt_posts(endpoint: Endpoint, path: str, content_type: str, bodies: Sequence[bytes],
                   headers: Sequence[tuple[str, str]] = ()) -> list[bytes]:
    """Each body as a complete HTTP/1.1 POST, ready to write (with the user's extra headers, if any)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return [(f"POST {path} HTTP/1.1\r\nHost: {endpoint.host_header}\r\nContent-Type: {content_type}\r\n"
             f"Content-Length: {len(body)}\r\nAccept: */*\r\n{extra}\r\n").encode("latin-1") + body
            for body in bodies]


def whole_response(data: bytes) -> tuple[int, int] | None:
    """(status, body size) of `data` when it is exactly one whole, plain HTTP/1.1 answer with one Content-Length
    and no Connection or Transfer-Encoding header (what a model server sends back on a keep-alive connection),
    read in a third of llhttp's time (measured 2.5-3 us against 7-10 us with its callbacks); None for
    anything else, which llhttp then parses."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.startswith(b"HTTP/1.1 "):
        return None
    head = data[:end].lower()
    if b"\r\ntransfer-encoding:" in head or b"\r\nconnection:" in head or head.count(b"\r\ncontent-length:") != 1:
        return None
    start = head.find(b"\r\ncontent-length:") + len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    try:
        length = int(head[start:stop if stop >= 0 else len(head)])
        status = int(data[9:12])
    except ValueError:
        return None
    if len(data) - end - 4 != length or not 200 <= status <= 999 or status in (204, 304) or data[12:13] != b" ":
        return None
    return status, length


class _Response(HTTPResponseParser):
    """llhttp callbacks that keep only what a sample records: completion and the body's size."""

    def __init__(self) -> None:
        super().__init__()
        self.body_bytes = 0
        self.complete = False

    def _on_message_begin(self) -> None:
        pass

    def _on_status(self, _status: str) -> None:
        pass

    def _on_header_field(self, _field: str) -> None:
        pass

    def _on_header_value(self, _value: str) -> None:
        pass

    def _on_headers_complete(self) -> bool:
        return False  # a POST's response has a body to parse

    def _on_body(self, chunk: bytearray) -> None:
        self.body_bytes += len(chunk)

    def _on_message_complete(self) -> None:
        self.complete = True


class KeepAliveConnection:
    """Sends one request at a time on one connection, reconnecting when the server closed it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.transport: Transport | None = None
        self.connects = 0
        self._tls: gevent.ssl.SSLContext | None = None
        self._request = b""  # started and not yet completed: the request, how much of it was written, on
        self._written = 0  # a connection that had served before (a stale one is retried), or the write's error
        self._reused = False
        self._error: OSError | None = None

    def _connect(self) -> Transport:
        if self.endpoint.scheme == "https" and self._tls is None:
            self._tls = self.endpoint.tls_context()
        transport = open_transport(self.endpoint.host, self.endpoint.port, self.timeout_s, self._tls)
        self.connects += 1
        return transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def send(self, request: bytes) -> tuple[int, int]:
        """The response's status and body size; raises OSError (ConnectionClosed, a timeout, a refused
        connection) when no complete response came back."""
        self.start(request)
        reply = self.complete()
        return reply.status, reply.size

    def start(self, request: bytes) -> None:
        """Write the request now, as much as the socket takes at once (all of it but for a very large body), if
        the connection is open; `complete` writes the rest, or all of it on a connection it opens first."""
        self._request, self._written, self._error = request, 0, None
        self._reused = self.transport is not None
        if self.transport is None:
            return
        try:
            self._written = self.transport.send(request)
        except OSError as error:
            self.close()
            self._error = error

    def complete(self) -> Reply:
        """The started request's response; raises like `send`."""
        request, written, error = self._request, self._written, self._error
        self._request, self._error = b"", None
        # not yet open when started: the request leaves now (a stale connection's retry keeps its first send)
        sent_at = time.time() if self.transport is None and error is None and not self._reused else None
        try:
            if error is not None:
                raise ConnectionClosed("before any byte") if error.errno in PEER_CLOSED else error
            reply = self._exchange(request, written)
            return reply if sent_at is None else reply._replace(sent_at=sent_at)
        except ConnectionClosed as closed:
            if not (self._reused and closed.args and closed.args[0] == "before any byte"):
                raise
        return self._exchange(request, 0)  # the stale keep-alive case: once more, on a new connection

    def _exchange(self, request: bytes, written: int) -> Reply:
        if self.transport is None:
            self.transport = self._connect()
            written = 0
        transport = self.transport
        received = 0
        received_at = 0.0
        try:
            if written < len(request):
                transport.sendall(request[written:] if written else request)
            data, received_at = transport.receive()
            whole = whole_response(data) if data else None
            if whole is not None:
                return Reply(whole[0], whole[1], received_at)
            response = _Response()
            while True:
                if not data:
                    response.feed(b"")  # a body delimited by the connection's end completes here
                    if response.complete:
                        break
                    raise ConnectionClosed("before any byte" if received == 0 else "mid-response")
                received += len(data)
                response.feed(data)
                if response.complete:
                    break
                data, received_at = transport.receive()
        except OSError as error:
            self.close()
            if error.errno in PEER_CLOSED and received == 0:
                raise ConnectionClosed("before any byte") from error
            raise
        except BaseException:
            self.close()  # a parse error or an interruption leaves the connection in an unknown state
            raise
        if not response.should_keep_alive():
            self.close()
        return Reply(response.get_code(), response.body_bytes, received_at)
