"""The byte stream under a generator connection: plain TCP driven by gevent's loop directly, or TLS.

On plain TCP the socket is the standard library's, non-blocking, with its loop watchers (readable, writable,
timeout) made once per connection: a response is read after the loop said it is there. gevent's own socket
first tries to read, fails with EAGAIN (a system call and an exception), then makes a Timeout object for the
wait: measured 2026-12-07 on this machine, the EAGAIN read alone cost 7.7 us, a fifth of a loopback send
(39 us), at a generator's budget of 125 us per request at 8,000 req/s. The kernel stamps each received
segment's arrival (SO_TIMESTAMPNS), which a response carries as its time however late it is read.

The socket is `_socket.socket`, the C type, since a Locust process has `socket.socket` patched into gevent's.
TLS keeps gevent's SSL socket (its records need its own reads and writes) and the time of the read.
"""

from __future__ import annotations

import _socket
import socket
import struct
import time
from typing import Any, Protocol

import gevent.socket
import gevent.ssl
from gevent.hub import Waiter, get_hub

RECEIVE_BYTES = 65536
# Linux's generic socket options (Python names neither): a received segment's CLOCK_REALTIME arrival time
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESTAMP = struct.Struct("qq")  # struct timespec: seconds, nanoseconds
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESTAMP.size)
READ, WRITE = 1, 2  # libev's event masks


class Transport(Protocol):
    """What a connection needs of its byte stream."""

    def send(self, data: bytes | memoryview) -> int:
        """Write what the socket takes now without waiting (0 if nothing)."""

    def sendall(self, data: bytes) -> None: ...

    def receive(self) -> tuple[bytes, float]:
        """The next bytes (b"" at the peer's end) and when they arrived, waiting up to the timeout for them;
        raises TimeoutError or OSError."""

    def close(self) -> None: ...


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The arrival time SO_TIMESTAMPNS attached to a recvmsg, if any."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= TIMESTAMP.size:
            seconds, nanoseconds = TIMESTAMP.unpack_from(data)
            return float(seconds) + float(nanoseconds) / 1e9
    return None


class PlainTransport:
    """A non-blocking TCP socket; each wait is one loop watcher started and stopped, bounded by one timer."""

    def __init__(self, sock: _socket.socket, timeout_s: float) -> None:
        sock.setblocking(False)
        self.sock = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._stamped = True
        except OSError:
            self._stamped = False  # no kernel stamps here: a response is timed when this process reads it
        loop = get_hub().loop
        self._readable = loop.io(sock.fileno(), READ)
        self._writable = loop.io(sock.fileno(), WRITE)
        self._timer = loop.timer(timeout_s)

    def _wait(self, watcher: Any) -> None:
        waiter = Waiter()
        watcher.start(waiter.switch, None)
        self._timer.start(waiter.throw, TimeoutError, "timed out")  # made only if it fires
        try:
            waiter.get()
        finally:
            watcher.stop()
            self._timer.stop()

    def send(self, data: bytes | memoryview) -> int:
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = self.send(view)
            if sent == 0:
                self._wait(self._writable)
            view = view[sent:]

    def receive(self) -> tuple[bytes, float]:
        """Waits first: a response is read right after its request went out, or after the part before it,
        when the rest is rarely there yet (and when it is, the loop says so at once)."""
        while True:
            self._wait(self._readable)
            try:
                if self._stamped:
                    data, ancillary, _flags, _address = self.sock.recvmsg(RECEIVE_BYTES, ANCILLARY_BYTES)
                    return data, kernel_stamp(ancillary) or time.time()
                return self.sock.recv(RECEIVE_BYTES), time.time()
            except BlockingIOError:  # readable, then not: another reader, or a segment the kernel dropped
                continue

    def close(self) -> None:
        self._readable.close()
        self._writable.close()
        self._timer.close()
        self.sock.close()


class TlsTransport:
    """gevent's SSL socket, timed when read (its records are decrypted here, after arrival)."""

    def __init__(self, sock: gevent.ssl.SSLSocket) -> None:
        self.sock = sock

    def send(self, data: bytes | memoryview) -> int:
        return int(self.sock.send(data))

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> tuple[bytes, float]:
        data = self.sock.recv(RECEIVE_BYTES)  # at once: a record may already sit decrypted in its buffer
        return data, time.time()

    def close(self) -> None:
        self.sock.close()


def open_transport(host: str, port: int, timeout_s: float, tls: gevent.ssl.SSLContext | None) -> Transport:
    """A connection to host:port (TCP_NODELAY: each request leaves whole, at once), over TLS when given."""
    sock = gevent.socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        return TlsTransport(tls.wrap_socket(sock, server_hostname=host))
    # the C socket itself: under Locust `socket.socket` is gevent's (monkey-patched), which waits its own way
    return PlainTransport(_socket.socket(fileno=sock.detach()), timeout_s)
