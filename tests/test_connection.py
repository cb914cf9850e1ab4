"""The generator's keep-alive connection against a real socket server in a thread, one behaviour each."""

from __future__ import annotations

import dataclasses
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.load.connection import (
    ConnectionClosed,
    Endpoint,
    KeepAliveConnection,
    _Response,
    prebuilt_posts,
    whole_response,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\": true}"
CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
CHUNKED = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

Behaviour = Callable[[socket.socket, int], None]  # (connection, requests already answered on it)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += conn.recv(65536)
    return data


@contextmanager
def server(behaviour: Behaviour,
           tls: ssl.SSLContext | None = None) -> Iterator[tuple[Endpoint, list[bytes], list[int]]]:
    """Answers each request by behaviour (over TLS with a server context); records requests and how many
    connections were accepted."""
    requests: list[bytes] = []
    connections = [0]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connections[0] += 1
            answered = 0
            if tls is not None:
                self.request = tls.wrap_socket(self.request, server_side=True)
            while True:
                request = read_request(self.request)
                if not request:
                    return
                requests.append(request)
                behaviour(self.request, answered)
                answered += 1

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as tcp:
        tcp.daemon_threads = True
        thread = threading.Thread(target=tcp.serve_forever, daemon=True)
        thread.start()
        try:
            scheme = "http" if tls is None else "https"
            yield Endpoint(scheme, "127.0.0.1", tcp.server_address[1], verify_tls=False), requests, connections
        finally:
            tcp.shutdown()


def post(endpoint: Endpoint, body: bytes = b'{"inputs": [1]}') -> bytes:
    return prebuilt_posts(endpoint, "/predict", "application/json", [body])[0]


def test_requests_share_one_connection_and_report_status_and_body_size() -> None:
    with server(lambda conn, _n: conn.sendall(OK)) as (endpoint, requests, connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        results = [connection.send(post(endpoint)) for _ in range(5)]
        connection.close()
    assert results == [(200, 12)] * 5 and connections == [1] and connection.connects == 1
    assert requests[0].startswith(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 15\r\n" in requests[0] and requests[0].endswith(b'{"inputs": [1]}')


def test_a_response_that_closes_the_connection_gets_a_new_one_next_time() -> None:
    with server(lambda conn, _n: conn.sendall(CLOSE)) as (endpoint, _requests, connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        results = [connection.send(post(endpoint)) for _ in range(3)]
    assert results == [(200, 2)] * 3 and connection.connects == 3 and connections == [3]


def test_a_chunked_error_response_is_read_whole() -> None:
    with server(lambda conn, _n: conn.sendall(CHUNKED)) as (endpoint, _requests, _connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        assert connection.send(post(endpoint)) == (503, 11)
        assert connection.send(post(endpoint)) == (503, 11)  # and the connection stays usable
    assert connection.connects == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_request_sent_again() -> None:
    def answer_once_then_close(conn: socket.socket, answered: int) -> None:
        if answered == 0:
            conn.sendall(OK)  # keep-alive promised, then the server drops the idle connection
            conn.shutdown(socket.SHUT_RDWR)

    with server(answer_once_then_close) as (endpoint, requests, connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        assert connection.send(post(endpoint)) == (200, 12)
        time.sleep(0.1)
        assert connection.send(post(endpoint)) == (200, 12)
    assert connection.connects == 2 and connections == [2] and len(requests) == 2


def test_a_fresh_connection_closed_without_an_answer_is_an_error_not_a_retry() -> None:
    def close_at_once(conn: socket.socket, _answered: int) -> None:
        conn.shutdown(socket.SHUT_RDWR)

    with server(close_at_once) as (endpoint, requests, connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        with pytest.raises(ConnectionClosed):
            connection.send(post(endpoint))
    assert len(requests) == 1 and connections == [1]


def test_a_server_that_never_answers_times_out() -> None:
    with server(lambda _conn, _n: time.sleep(3)) as (endpoint, _requests, _connections):
        connection = KeepAliveConnection(endpoint, timeout_s=0.3)
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            connection.send(post(endpoint))
        assert time.perf_counter() - started < 2.0
    assert connection.transport is None  # an unknown state is never reused


def test_a_refused_connection_raises() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = KeepAliveConnection(Endpoint("http", "127.0.0.1", port), timeout_s=1)
    with pytest.raises(ConnectionRefusedError):
        connection.send(post(connection.endpoint))


ANSWERS = [
    OK, CLOSE, CHUNKED,
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\ndate: x\r\n\r\nnot found",
    b"HTTP/1.1 200 OK\r\nContent-Length:   3 \r\n\r\nabc",  # spaces around the value
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",  # the body's last byte still to come
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1",  # more than one answer
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nabc",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\nno length: read to the end",
    b"HTTP/1.1 200 OK\r\nContent-Len",  # headers still to come
    b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_the_quick_read_of_a_whole_answer_agrees_with_llhttp_or_leaves_it_to_llhttp(answer: bytes) -> None:
    quick = whole_response(answer)
    if quick is None:
        return  # llhttp reads it, as before
    parsed = _Response()
    parsed.feed(answer)
    assert parsed.complete and parsed.should_keep_alive()
    assert quick == (parsed.get_code(), parsed.body_bytes)


def test_the_quick_read_takes_a_model_servers_usual_answers() -> None:
    assert whole_response(OK) == (200, 12)
    assert whole_response(ANSWERS[3]) == (404, 9) and whole_response(ANSWERS[4]) == (200, 3)
    assert [whole_response(answer) for answer in ANSWERS[5:]] == [None] * len(ANSWERS[5:])


def test_endpoints_come_from_base_urls() -> None:
    assert Endpoint.from_url("http://127.0.0.1:8080") == Endpoint("http", "127.0.0.1", 8080)
    assert Endpoint.from_url("https://example.test").port == 443
    assert Endpoint.from_url("http://example.test").host_header == "example.test"
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.from_url("grpc://127.0.0.1:9000")


def test_a_response_read_late_is_timed_when_it_arrived() -> None:
    """The open loop's split exchange: the request leaves at start; the response's time is the kernel's
    arrival stamp, not the moment this process read it."""
    with server(lambda conn, _n: conn.sendall(OK)) as (endpoint, _requests, _connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        connection.send(post(endpoint))  # open the connection: a started request is then written at once
        sent = time.time()
        connection.start(post(endpoint))
        time.sleep(0.2)  # the answer arrives meanwhile and waits in the socket
        reply = connection.complete()
        read = time.time()
    assert (reply.status, reply.size, reply.sent_at) == (200, 12, None)
    assert sent < reply.received_at < sent + 0.1 and read - reply.received_at > 0.1


def test_a_request_started_before_its_connection_opened_is_sent_and_timed_when_it_leaves() -> None:
    with server(lambda conn, _n: conn.sendall(OK)) as (endpoint, requests, connections):
        connection = KeepAliveConnection(endpoint, timeout_s=5)
        connection.start(post(endpoint))  # no connection yet: nothing written
        time.sleep(0.1)
        opened = time.time()
        reply = connection.complete()
    assert reply.status == 200 and reply.sent_at is not None and reply.sent_at >= opened
    assert len(requests) == 1 and connections == [1]


def test_requests_over_tls_share_one_connection_and_a_certificate_is_verified_against_its_ca(tmp_path: Path) -> None:
    """TLS keeps gevent's SSL socket (bench.load.transport.TlsTransport); a self-signed certificate for
    127.0.0.1 is accepted as its own CA and refused without it."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with server(lambda conn, _n: conn.sendall(OK), tls=context) as (endpoint, requests, connections):
        insecure = KeepAliveConnection(endpoint, timeout_s=5)
        assert [insecure.send(post(endpoint)) for _ in range(3)] == [(200, 12)] * 3 and insecure.connects == 1
        verified = KeepAliveConnection(dataclasses.replace(endpoint, verify_tls=True, ca_cert=str(cert)), 5)
        assert verified.send(post(endpoint)) == (200, 12)
        unknown = KeepAliveConnection(dataclasses.replace(endpoint, verify_tls=True), timeout_s=5)
        with pytest.raises(ssl.SSLError):
            unknown.send(post(endpoint))
    assert len(requests) == 4 and connections[0] >= 2
